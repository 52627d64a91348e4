build-clang/queue/smtpgate-queue.o: queue/smtpgate-queue.c common/cli.h \
  common/config.h common/error.h common/log.h

common/cli.h:

common/config.h:

common/error.h:

common/log.h:
