/* check_io.c - atomic file writes, including a disk that fills up. */
#include "test_util.h"

#include <string.h>

#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "core.h"

START_TEST(writes_and_replaces)
{
    char dir[256], path[512];
    cd_test_tmpdir(dir, sizeof dir);
    cd_test_path(path, sizeof path, dir, "out.bin");
    CD_ASSERT_OK(cd__write_file_atomic(path, "hello", 5));
    ck_assert_int_eq(cd_test_file_size(path), 5);
    CD_ASSERT_OK(cd__write_file_atomic(path, "hi", 2));
    ck_assert_int_eq(cd_test_file_size(path), 2);
    ck_assert_int_eq(cd_test_count_entries(dir), 1); /* no temporary left behind */
}
END_TEST

START_TEST(streaming_writes)
{
    char dir[256], path[512];
    cd_test_tmpdir(dir, sizeof dir);
    cd_test_path(path, sizeof path, dir, "s.bin");
    cd__atomic_file af;
    CD_ASSERT_OK(cd__atomic_open(&af, path));
    ck_assert_int_eq(cd_test_file_size(path), -1); /* invisible until commit */
    for (int i = 0; i < 100; i++) CD_ASSERT_OK(cd__atomic_write(&af, "0123456789", 10));
    CD_ASSERT_OK(cd__atomic_commit(&af));
    ck_assert_int_eq(cd_test_file_size(path), 1000);
    /* Abort leaves the old file and nothing else. */
    CD_ASSERT_OK(cd__atomic_open(&af, path));
    CD_ASSERT_OK(cd__atomic_write(&af, "x", 1));
    cd__atomic_abort(&af);
    ck_assert_int_eq(cd_test_file_size(path), 1000);
    ck_assert_int_eq(cd_test_count_entries(dir), 1);
    CD_ASSERT_STATUS(cd__atomic_write(&af, "x", 1), CD_ERR_STATE);
    CD_ASSERT_STATUS(cd__atomic_commit(&af), CD_ERR_STATE);
}
END_TEST

START_TEST(missing_folder_is_an_error)
{
    CD_ASSERT_STATUS(cd__write_file_atomic("/nonexistent-colddiff/dir/f.bin", "x", 1),
                     CD_ERR_NOT_FOUND);
    CD_ASSERT_ERROR_MENTIONS("cannot write '/nonexistent-colddiff/dir/f.bin': its folder does "
                             "not exist");
    ck_assert_ptr_null(strstr(cd_last_error(), ".tmp")); /* our name, not the user's */
    CD_ASSERT_STATUS(cd__write_file_atomic("", "x", 1), CD_ERR_INVALID_ARGUMENT);
    CD_ASSERT_STATUS(cd__write_file_atomic(NULL, "x", 1), CD_ERR_INVALID_ARGUMENT);
}
END_TEST

START_TEST(path_that_is_a_folder_is_an_error)
{
    char dir[256], path[512];
    cd_test_tmpdir(dir, sizeof dir);
    cd_test_path(path, sizeof path, dir, "sub");
    ck_assert_int_eq(mkdir(path, 0755), 0);
    CD_ASSERT_STATUS(cd__write_file_atomic(path, "x", 1), CD_ERR_IO);
    CD_ASSERT_ERROR_MENTIONS("sub");
    ck_assert_int_eq(cd_test_count_entries(dir), 1); /* the temporary was removed */
}
END_TEST

/* A full disk, simulated with a file-size limit: the write fails with
 * EFBIG at some point, and the previous file must survive intact. */
START_TEST(full_disk_keeps_the_old_file)
{
    char dir[256], path[512];
    cd_test_tmpdir(dir, sizeof dir);
    cd_test_path(path, sizeof path, dir, "ckpt.bin");
    CD_ASSERT_OK(cd__write_file_atomic(path, "previous", 8));

    signal(SIGXFSZ, SIG_IGN);
    struct rlimit lim = {4096, 4096};
    ck_assert_int_eq(setrlimit(RLIMIT_FSIZE, &lim), 0);
    enum { BIG = 1 << 20 };
    char *buf = calloc(BIG, 1);
    CD_ASSERT_STATUS(cd__write_file_atomic(path, buf, BIG), CD_ERR_IO);
    CD_ASSERT_ERROR_MENTIONS("ckpt.bin");
    CD_ASSERT_ERROR_MENTIONS("unchanged");
    free(buf);

    ck_assert_int_eq(cd_test_file_size(path), 8);
    ck_assert_int_eq(cd_test_count_entries(dir), 1);
}
END_TEST

/* A writer killed before its rename (kill -9) leaves "<path>.tmp.<pid>.<n>".
 * The next successful write of path removes it, but never a temporary of a
 * live process nor one of another file. */
START_TEST(stale_temporaries_of_dead_writers_are_removed)
{
    char dir[256], path[512], name[640];
    cd_test_tmpdir(dir, sizeof dir);
    cd_test_path(path, sizeof path, dir, "ckpt.cdm");
    CD_ASSERT_OK(cd__write_file_atomic(path, "first", 5));
    const pid_t child = fork();
    ck_assert_int_ge(child, 0);
    if (child == 0) {
        cd__atomic_file af;
        if (cd__atomic_open(&af, path) == CD_OK) (void)cd__atomic_write(&af, "torn", 4);
        fflush(af.fp);
        raise(SIGKILL);
    }
    int status = 0;
    ck_assert_int_eq(waitpid(child, &status, 0), child);
    ck_assert(WIFSIGNALED(status));
    ck_assert_int_eq(cd_test_count_entries(dir), 2); /* ckpt.cdm and the dead one's */

    /* Kept: this process's open write, pid 1's (alive), another file's. */
    cd__atomic_file live;
    CD_ASSERT_OK(cd__atomic_open(&live, path));
    snprintf(name, sizeof name, "%s.tmp.1.0", path);
    cd_test_write_file(name, "x", 1);
    snprintf(name, sizeof name, "%s/other.cdm.tmp.%ld.0", dir, (long)child);
    cd_test_write_file(name, "x", 1);
    snprintf(name, sizeof name, "%s.tmp.%ld.x", path, (long)child);
    cd_test_write_file(name, "x", 1);
    ck_assert_int_eq(cd_test_count_entries(dir), 6);

    CD_ASSERT_OK(cd__write_file_atomic(path, "second", 6));
    ck_assert_int_eq(cd_test_count_entries(dir), 5); /* only the dead writer's went */
    ck_assert_int_eq(cd_test_file_size(name), 1);
    snprintf(name, sizeof name, "%s.tmp.1.0", path);
    ck_assert_int_eq(cd_test_file_size(name), 1);
    snprintf(name, sizeof name, "%s/other.cdm.tmp.%ld.0", dir, (long)child);
    ck_assert_int_eq(cd_test_file_size(name), 1);
    ck_assert_int_eq(cd_test_file_size(path), 6);
    CD_ASSERT_OK(cd__atomic_write(&live, "live", 4));
    CD_ASSERT_OK(cd__atomic_commit(&live)); /* the live write was left alone */
    ck_assert_int_eq(cd_test_file_size(path), 4);
}
END_TEST

static Suite *make_suite(void)
{
    Suite *s = suite_create("io");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, writes_and_replaces);
    tcase_add_test(tc, streaming_writes);
    tcase_add_test(tc, missing_folder_is_an_error);
    tcase_add_test(tc, path_that_is_a_folder_is_an_error);
    tcase_add_test(tc, full_disk_keeps_the_old_file);
    tcase_add_test(tc, stale_temporaries_of_dead_writers_are_removed);
    suite_add_tcase(s, tc);
    return s;
}

CD_TEST_MAIN(make_suite)
