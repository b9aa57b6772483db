/* The fuzz targets without libFuzzer (make fuzz-replay): each file named,
 * or each file of each directory named, goes once through
 * LLVMFuzzerTestOneInput; an invariant failure traps, so the exit status
 * says it all.  Included by a target after its LLVMFuzzerTestOneInput and
 * its CHECK. */
#ifndef PTM_FUZZ_REPLAY_H
#define PTM_FUZZ_REPLAY_H

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int replay_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    uint8_t *buf = NULL;
    size_t len = 0, cap = 0, got;

    if (!f) {
        fprintf(stderr, "%s: %s\n", path, strerror(errno));
        return -1;
    }
    do {
        if (len == cap) {
            cap = cap ? 2 * cap : 4096;
            buf = realloc(buf, cap);
            CHECK(buf != NULL);
        }
        got = fread(buf + len, 1, cap - len, f);
        len += got;
    } while (got > 0);
    fclose(f);
    LLVMFuzzerTestOneInput(buf, len);
    free(buf);
    return 0;
}

/* Replay argv[first..argc); prints "<what>: N inputs, ..." and returns
 * non-zero when one failed. */
static int replay_all(int argc, char **argv, int first, const char *what)
{
    int i, n = 0, bad = 0;

    for (i = first; i < argc; i++) {
        DIR *d = opendir(argv[i]);
        struct dirent *de;

        if (!d) {
            bad |= replay_file(argv[i]) != 0;
            n++;
            continue;
        }
        while ((de = readdir(d)) != NULL) {
            if (de->d_name[0] != '.') {
                char path[PATH_MAX];

                snprintf(path, sizeof(path), "%s/%s", argv[i], de->d_name);
                bad |= replay_file(path) != 0;
                n++;
            }
        }
        closedir(d);
    }
    printf("%s: %d input%s, %s\n", what, n, n == 1 ? "" : "s",
           bad ? "FAILED" : "all invariants held");
    return bad;
}

#endif
