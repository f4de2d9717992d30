/*
 * A Redis module of the least-privilege tests: what the redis account can make
 * any redis-server load with one `loadmodule` line in a redis.conf it may
 * write. Its OnLoad writes the uid it runs as to markers/uid-<pid> beside the
 * .so (a world-writable 1777 directory), then its gid and its supplementary
 * groups on a second line, then what it can reach of the session of whoever
 * started it on a third: whether it has a controlling terminal (into which
 * it could type, TIOCSTI, for root's shell to run) and the key
 * `rb-root-secret` of the session keyring, if it can read it. Then it fails
 * (returns 1, REDISMODULE_ERR), so the server that loaded it exits at once: a
 * marker saying 0 means the attacker's code ran as root.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <grp.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

int RedisModule_OnLoad(void *ctx, void **argv, int argc)
{
    (void)ctx;
    (void)argv;
    (void)argc;
    Dl_info info;
    char dir[4096], marker[4200];
    if (dladdr((void *)RedisModule_OnLoad, &info) && info.dli_fname) {
        snprintf(dir, sizeof dir, "%s", info.dli_fname);
        char *slash = strrchr(dir, '/');
        if (slash)
            *slash = '\0';
        else
            snprintf(dir, sizeof dir, ".");
        snprintf(marker, sizeof marker, "%s/markers/uid-%d", dir, (int)getpid());
        int fd = open(marker, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd >= 0) {
            gid_t groups[256];
            int n = getgroups(256, groups);
            dprintf(fd, "%d\n%d", (int)getuid(), (int)getgid());
            for (int i = 0; i < n; i++)
                dprintf(fd, " %d", (int)groups[i]);
            dprintf(fd, "\n");
            int tty = open("/dev/tty", O_RDWR | O_NOCTTY | O_CLOEXEC);
            dprintf(fd, "tty=%d ", tty >= 0);
            if (tty >= 0)
                close(tty);
            /* KEYCTL_SEARCH (10) in KEY_SPEC_SESSION_KEYRING (-3), then
             * KEYCTL_READ (11). */
            char secret[64] = {0};
            long key = syscall(SYS_keyctl, 10, -3, "user", "rb-root-secret", 0);
            long got = key > 0 ? syscall(SYS_keyctl, 11, key, secret, sizeof secret - 1) : -1;
            dprintf(fd, "keyring=%s\n", got > 0 ? secret : "-");
            close(fd);
        }
    }
    return 1;
}
