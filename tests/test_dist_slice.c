/* nn_dist_slice: the slices of all ranks tile [0, n) in rank order, the first n % size
 * ranks take one more item, ranks beyond n get empty slices, and a NULL or one-process
 * communicator takes everything. Pure arithmetic: no MPI, no callbacks are called. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "normnet.h"

static void test_slices_tile_in_rank_order(void **state) {
  (void)state;
  for (int size = 1; size <= 7; size++)
    for (int n = 0; n <= 20; n++) {
      int next = 0;
      for (int rank = 0; rank < size; rank++) {
        nn_comm comm = {.rank = rank, .size = size};
        nn_range r = nn_dist_slice(&comm, n);
        if (r.lo != next) fail_msg("n %d, %d ranks: rank %d starts at %d, not %d", n, size, rank, r.lo, next);
        int want = n / size + (rank < n % size);
        if (r.hi - r.lo != want) fail_msg("n %d, %d ranks: rank %d takes %d items, not %d", n, size, rank, r.hi - r.lo, want);
        next = r.hi;
      }
      assert_int_equal(next, n);
    }
}

static void test_one_process(void **state) {
  (void)state;
  nn_range r = nn_dist_slice(NULL, 13);
  assert_int_equal(r.lo, 0);
  assert_int_equal(r.hi, 13);
  nn_comm one = {.rank = 0, .size = 1};
  r = nn_dist_slice(&one, 13);
  assert_int_equal(r.lo, 0);
  assert_int_equal(r.hi, 13);
  /* 3 items over 5 ranks: ranks 0-2 take one each, 3 and 4 none (at the end) */
  nn_comm last = {.rank = 4, .size = 5};
  r = nn_dist_slice(&last, 3);
  assert_int_equal(r.lo, 3);
  assert_int_equal(r.hi, 3);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_slices_tile_in_rank_order),
      cmocka_unit_test(test_one_process),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
