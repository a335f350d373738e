/*
 * Whether a jailed program can join the user namespace of another process
 * (tests/test_login.py): pidfd_open(PID) and setns(CLONE_NEWUSER); prints
 * "join ok" or "join ERRNO-NAME" (or "pidfd ERRNO-NAME").  Static, so it
 * needs nothing in the jail.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    int pidfd;

    if (argc != 2)
        return 2;
    pidfd = syscall(SYS_pidfd_open, atoi(argv[1]), 0);
    if (pidfd == -1) {
        printf("pidfd %s\n", strerrorname_np(errno));
        return 0;
    }
    if (setns(pidfd, CLONE_NEWUSER) == -1)
        printf("join %s\n", strerrorname_np(errno));
    else
        printf("join ok\n");
    return 0;
}
