build-clang/common/cli.o: common/cli.c common/cli.h common/config.h \
  common/error.h common/version.h

common/cli.h:

common/config.h:

common/error.h:

common/version.h:
