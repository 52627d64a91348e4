build-clang/queue/smtpgate-flush.o: queue/smtpgate-flush.c common/cli.h \
  common/config.h common/error.h common/log.h

common/cli.h:

common/config.h:

common/error.h:

common/log.h:
