/* standalone.c - runs a fuzz target without libFuzzer, with any compiler.
 *
 *   TARGET [FILE|DIR]...   replays each file, and each file in each
 *                          directory (sorted, dotfiles skipped)
 *   TARGET                 replays standard input
 *
 * Each input is copied into a malloc'd buffer of exactly its size, so a
 * sanitizer sees a read one past the end instead of slack. Arguments that
 * start with '-' are libFuzzer options and are ignored, so the same command
 * line works for both builds. An input that runs longer than
 * FUZZ_TIMEOUT_SECS (default 25) ends the process. */
#include "fuzz.h"

#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

__attribute__((weak)) int LLVMFuzzerInitialize(int *argc, char ***argv);

static unsigned timeout_secs = 25;
static unsigned replayed;

static int run_stream(FILE *f, const char *name)
{
    size_t cap = 4096, len = 0, n;
    unsigned char *buf = malloc(cap), *exact;

    if (buf == NULL)
        return -1;
    while ((n = fread(buf + len, 1, cap - len, f)) > 0) {
        len += n;
        if (len == cap) {
            unsigned char *p = realloc(buf, cap * 2);

            if (p == NULL) {
                free(buf);
                return -1;
            }
            buf = p;
            cap *= 2;
        }
    }
    if (ferror(f)) {
        fprintf(stderr, "%s: read error\n", name);
        free(buf);
        return -1;
    }
    exact = malloc(len ? len : 1);
    if (exact == NULL) {
        free(buf);
        return -1;
    }
    memcpy(exact, buf, len);
    free(buf);
    fprintf(stderr, "running %s (%zu bytes)\n", name, len);
    alarm(timeout_secs);
    LLVMFuzzerTestOneInput(exact, len);
    alarm(0);
    free(exact);
    replayed++;
    return 0;
}

static int run_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    int rc;

    if (f == NULL) {
        perror(path);
        return -1;
    }
    rc = run_stream(f, path);
    fclose(f);
    return rc;
}

static int skip_dot(const struct dirent *e)
{
    return e->d_name[0] != '.';
}

static int run_dir(const char *dir)
{
    struct dirent **names;
    int n = scandir(dir, &names, skip_dot, alphasort), rc = 0;

    if (n < 0) {
        perror(dir);
        return -1;
    }
    for (int i = 0; i < n; i++) {
        size_t len = strlen(dir) + strlen(names[i]->d_name) + 2;
        char *path = malloc(len);
        struct stat st;

        if (path == NULL) {
            rc = -1;
        } else {
            snprintf(path, len, "%s/%s", dir, names[i]->d_name);
            if (stat(path, &st) == 0 && S_ISREG(st.st_mode) && run_file(path) != 0)
                rc = -1;
            free(path);
        }
        free(names[i]);
    }
    free(names);
    return rc;
}

int main(int argc, char **argv)
{
    const char *t = getenv("FUZZ_TIMEOUT_SECS");
    int rc = 0, files = 0;

    if (t != NULL && atoi(t) > 0)
        timeout_secs = (unsigned)atoi(t);
    if (LLVMFuzzerInitialize != NULL)
        LLVMFuzzerInitialize(&argc, &argv);
    for (int i = 1; i < argc; i++) {
        struct stat st;

        if (argv[i][0] == '-')
            continue;
        files++;
        if (stat(argv[i], &st) != 0) {
            perror(argv[i]);
            rc = -1;
        } else if (S_ISDIR(st.st_mode)) {
            rc |= run_dir(argv[i]);
        } else {
            rc |= run_file(argv[i]);
        }
    }
    if (files == 0)
        rc = run_stream(stdin, "<stdin>");
    fprintf(stderr, "%s: %u inputs replayed\n", argv[0], replayed);
    return rc == 0 ? 0 : 1;
}
