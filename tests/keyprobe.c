/* keyprobe: the session keyring as a program sees it (run in a jail by the
 * login service tests; static, so it needs nothing of the jail).
 *   keyprobe wrap KEY VALUE CMD...  join a new session keyring, add the user
 *                                   key KEY=VALUE to it, exec CMD (the suite)
 *   keyprobe put KEY VALUE          add KEY=VALUE to the session keyring
 *   keyprobe get KEY                print KEY's value from the session
 *                                   keyring, or "(not found)" */
#define _GNU_SOURCE
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/syscall.h>

#define SESSION (-3)

int main(int argc, char **argv)
{
    if (argc > 4 && strcmp(argv[1], "wrap") == 0) {
        if (syscall(SYS_keyctl, 1 /* JOIN_SESSION_KEYRING */, "jt-daemon") < 0
            || syscall(SYS_add_key, "user", argv[2], argv[3], strlen(argv[3]),
                       SESSION) < 0) {
            perror("keyprobe wrap");
            return 120;
        }
        execvp(argv[4], argv + 4);
        perror("keyprobe exec");
        return 127;
    }
    if (argc > 3 && strcmp(argv[1], "put") == 0) {
        long key = syscall(SYS_add_key, "user", argv[2], argv[3],
                           strlen(argv[3]), SESSION);
        printf("put %s: %s\n", argv[2], key < 0 ? "failed" : "done");
        fflush(stdout);
        return key < 0;
    }
    if (argc > 2 && strcmp(argv[1], "get") == 0) {
        char value[256] = "";
        long key = syscall(SYS_keyctl, 10 /* SEARCH */, SESSION, "user",
                           argv[2], 0);
        long n = key < 0 ? -1 : syscall(SYS_keyctl, 11 /* READ */, key, value,
                                        sizeof value - 1);
        if (n >= 0)
            value[n < (long)sizeof value ? n : (long)sizeof value - 1] = 0;
        printf("get %s: %s\n", argv[2], n >= 0 ? value : "(not found)");
        return 0;
    }
    fprintf(stderr, "usage: keyprobe wrap|put|get ...\n");
    return 2;
}
