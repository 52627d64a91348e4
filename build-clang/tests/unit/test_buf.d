build-clang/tests/unit/test_buf.o: tests/unit/test_buf.c common/buf.h \
  tests/unit/unit.h

common/buf.h:

tests/unit/unit.h:
