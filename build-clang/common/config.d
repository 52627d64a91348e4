build-clang/common/config.o: common/config.c common/config.h \
  common/error.h common/buf.h

common/config.h:

common/error.h:

common/buf.h:
