/*
 * What a jailed program can do to a bind of a bind jail (tests/test_bindenter.py):
 * for the path given, try to open it for writing, to remount it read-write,
 * nosuid and nodev cleared, to unmount it, and to make a user and mount
 * namespace of its own; print one line per attempt: "NAME ok" or
 * "NAME ERRNO-NAME".  Static, so it needs nothing in the jail.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <unistd.h>

static void report(const char *name, int result)
{
    if (result == -1)
        printf("%s %s\n", name, strerrorname_np(errno));
    else
        printf("%s ok\n", name);
}

int main(int argc, char **argv)
{
    int fd;

    if (argc != 2)
        return 2;
    fd = open(argv[1], O_WRONLY | O_APPEND);
    report("write", fd);
    report("remount", mount(NULL, argv[1], NULL, MS_REMOUNT | MS_BIND, NULL));
    report("umount", umount2(argv[1], MNT_DETACH));
    report("userns", unshare(CLONE_NEWUSER | CLONE_NEWNS));
    return 0;
}
