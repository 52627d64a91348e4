build-clang/handler/smtpgate-handler.o: handler/smtpgate-handler.c \
  common/cli.h common/config.h common/error.h common/log.h

common/cli.h:

common/config.h:

common/error.h:

common/log.h:
