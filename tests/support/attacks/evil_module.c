/*
 * A Redis module of the least-privilege tests: what the redis account can make
 * any redis-server load with one `loadmodule` line in a redis.conf it may
 * write. Its OnLoad writes the uid it runs as to markers/uid-<pid> beside the
 * .so (a world-writable 1777 directory), then its gid and its supplementary
 * groups on a second line, then fails (returns 1,
 * REDISMODULE_ERR), so the server that loaded it exits at once: a marker
 * saying 0 means the attacker's code ran as root.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <grp.h>
#include <stdio.h>
#include <string.h>
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
            close(fd);
        }
    }
    return 1;
}
