/* The tuning database on the CPU: keys and buckets, file naming, a write/read
 * round trip (from the file and from its bytes), atomic writes, unusable files
 * (truncated, garbage, empty, wrong version, foreign GPU, a wrong winner) that
 * are reported and never used or silently overwritten, and the lookup
 * fallback chain. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "sp_db.h"
#include "sprig.h"
#include "test_util.h"

static const sp_gpu_id H100 = {"NVIDIA H100 80GB HBM3", 9, 0, 132};
static const sp_gpu_id H800 = {"NVIDIA H800", 9, 0, 132};
static const sp_gpu_id A100 = {"NVIDIA A100-SXM4-80GB", 8, 0, 108};
static const uint64_t HASH = 0x0123456789abcdefull, OLD_HASH = 0xfeedfacecafebeefull;

/* ---- helpers ---------------------------------------------------------------------------- */

static char *slurp(const char *path, size_t *len) {
    FILE *fp = fopen(path, "rb");
    if (!fp) return NULL;
    fseek(fp, 0, SEEK_END);
    long n = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    if (buf && fread(buf, 1, (size_t)n, fp) != (size_t)n) n = 0;
    if (buf) buf[n] = '\0';
    fclose(fp);
    if (len) *len = (size_t)n;
    return buf;
}

static void spit(const char *path, const char *text, size_t len) {
    FILE *fp = fopen(path, "wb");
    if (!fp) return;
    fwrite(text, 1, len, fp);
    fclose(fp);
}



static void path_for(const char *dir, const sp_gpu_id *gpu, char *buf, size_t cap) {
    char name[300];
    sp_db_file_name(gpu, name, sizeof name);
    snprintf(buf, cap, "%s/%s", dir, name);
}

/* A search result with three trials: the winner, a wrong one that was faster,
 * a slower verified one. */
typedef struct fake_result {
    sp_trial trials[3];
    sp_search_result r;
} fake_result;

static void fake(fake_result *f, const char *winner, double us) {
    memset(f, 0, sizeof *f);
    static char wrong[] = "threads=64", slow[] = "threads=512";
    f->trials[0].params = (char *)winner;
    f->trials[0].m = (sp_measurement){SP_VERDICT_OK, 1e-4, us, us * 0.9, 50, 1980, 2619, ""};
    f->trials[0].confirmed = 1;
    f->trials[0].confirm_median_us = us;
    f->trials[1].params = wrong;
    f->trials[1].m = (sp_measurement){SP_VERDICT_WRONG, 0.5, 0, 0, 0, 0, 0, "rel_err 0.5"};
    f->trials[2].params = slow;
    f->trials[2].m = (sp_measurement){SP_VERDICT_OK, 2e-4, us * 2, us * 1.8, 50, 0, 0, ""};
    f->r = (sp_search_result){f->trials, 3, 0, 2, 1, 0, 4, 1, 0, 0.25};
}

static void put(sp_db *db, const char *family, uint64_t hash, int d, int f, const char *dtype, int batch,
                double sparsity, const char *fixed, const char *winner, double us) {
    sp_db_key k;
    CHECK(sp_db_key_make(&k, family, hash, d, f, dtype, batch, sparsity, 32, fixed) == SPRIG_OK);
    fake_result fr;
    fake(&fr, winner, us);
    CHECK_MSG(sp_db_put(db, &k, &fr.r) == SPRIG_OK, "%s", sprig_last_error());
}

/* ---- cases -------------------------------------------------------------------------------- */

static void test_keys(void) {
    int batches[][2] = {{1, 1}, {2, 4}, {4, 4}, {5, 8}, {8, 8}, {9, 16}, {17, 32}, {33, 64}, {64, 64}, {65, 0}, {0, 0}};
    for (size_t i = 0; i < sizeof batches / sizeof batches[0]; ++i)
        CHECK_MSG(sp_batch_bucket(batches[i][0]) == batches[i][1], "batch %d", batches[i][0]);
    double sp[][2] = {{0, 0}, {20, 0}, {30, 50}, {60, 50}, {70, 75}, {85, 90}, {100, 90}, {-1, -1}, {101, -1}};
    for (size_t i = 0; i < sizeof sp / sizeof sp[0]; ++i)
        CHECK_MSG(sp_sparsity_bucket(sp[i][0]) == (int)sp[i][1], "sparsity %g", sp[i][0]);

    char name[300];
    sp_db_file_name(&H100, name, sizeof name);
    CHECK_MSG(!strcmp(name, "NVIDIA_H100_80GB_HBM3-sm90-132sm.json"), "got %s", name);
    sp_gpu_id odd = {"GeForce RTX/4090 (x)", 8, 9, 128};
    sp_db_file_name(&odd, name, sizeof name);
    CHECK_MSG(!strcmp(name, "GeForce_RTX_4090__x_-sm89-128sm.json"), "got %s", name);

    sp_db_key k;
    CHECK(sp_db_key_make(&k, "dense_gemv", HASH, 4096, 11008, "fp16", 3, 48, 32, " vec=8 , op=up") == SPRIG_OK);
    char ks[512];
    sp_db_key_string(&k, ks, sizeof ks);
    CHECK_MSG(!strcmp(ks, "dense_gemv|0123456789abcdef|d=4096,f=11008|fp16|b=4|s=50|g=32|op=up,vec=8"), "got %s", ks);
    CHECK(sp_db_key_make(&k, "dense_gemv", HASH, 4096, 11008, "fp16", 65, 0, 32, "") == SPRIG_E_INVALID);
    CHECK(sp_contains(sprig_last_error(), "batch=65"));
    CHECK(sp_db_key_make(&k, "dense_gemv", HASH, 4096, 11008, "fp16", 1, 120, 32, "") == SPRIG_E_INVALID);

    char dir[512];
    CHECK(sp_db_dir("/x/y", dir, sizeof dir) == SPRIG_OK && !strcmp(dir, "/x/y"));
    setenv("SPRIG_DB_DIR", "/from/env", 1);
    CHECK(sp_db_dir(NULL, dir, sizeof dir) == SPRIG_OK && !strcmp(dir, "/from/env"));
    unsetenv("SPRIG_DB_DIR");
    setenv("HOME", "/home/someone", 1);
    unsetenv("XDG_DATA_HOME");
    CHECK(sp_db_dir(NULL, dir, sizeof dir) == SPRIG_OK && !strcmp(dir, "/home/someone/.local/share/sprig/db"));
}

static void test_round_trip(const char *dir) {
    sp_db *db = NULL;
    CHECK(sp_db_open(&db, dir, &H100, 0) == SPRIG_OK && db && db->n == 0);
    if (!db) return;
    db->nvrtc_version = 13000;
    db->driver_version = 12080;
    put(db, "dense_gemv", HASH, 4096, 11008, "fp16", 1, 0, "op=up", "op=up,threads=128", 21.5);
    put(db, "dense_gemv", HASH, 4096, 11008, "fp16", 1, 0, "op=down", "op=down,threads=256", 30.25);
    CHECK(sp_db_save(db) == SPRIG_OK);
    /* replacing an entry keeps one entry per key */
    put(db, "dense_gemv", HASH, 4096, 11008, "fp16", 1, 0, "op=up", "op=up,threads=128", 20.0);
    CHECK(db->n == 2);
    CHECK_MSG(sp_db_save(db) == SPRIG_OK, "%s", sprig_last_error());
    sp_db_close(db);
    CHECK_MSG(sp_test_count_files(dir, ".tmp") == 0, "temp files left behind");
    CHECK(sp_test_count_files(dir, ".json") == 1);

    db = NULL;
    CHECK_MSG(sp_db_open(&db, dir, &H100, 0) == SPRIG_OK, "%s", sprig_last_error());
    if (!db) return;
    CHECK(db->n == 2 && db->nvrtc_version == 13000 && db->driver_version == 12080);
    sp_db_key k;
    sp_db_key_make(&k, "dense_gemv", HASH, 4096, 11008, "fp16", 1, 0, 32, "op=up");
    const sp_db_entry *e = sp_db_find(db, &k);
    CHECK(e != NULL);
    if (e) {
        CHECK(!strcmp(e->winner, "op=up,threads=128"));
        CHECK(e->best.verdict == SP_VERDICT_OK && e->best.median_us == 20.0 && e->best.runs == 50);
        CHECK(e->best.sm_clock_mhz == 1980);
        CHECK(e->n_trials == 3 && e->trials[1].m.verdict == SP_VERDICT_WRONG && e->trials[1].m.rel_err == 0.5);
        CHECK(!strcmp(e->trials[1].m.note, "rel_err 0.5"));
        CHECK(e->trials[0].confirmed && e->trials[0].confirm_median_us == 20.0 && !e->trials[2].confirmed);
        CHECK(e->exhaustive == 1 && e->nvrtc_version == 13000 && e->timestamp[0] == '2');
        CHECK(e->key.template_hash == HASH);
    }
    sp_db_key_make(&k, "dense_gemv", OLD_HASH, 4096, 11008, "fp16", 1, 0, 32, "op=up");
    CHECK(sp_db_find(db, &k) == NULL); /* another template: another key */
    sp_db_close(db);
}

/* sp_db_parse: the file's bytes (in a buffer with no NUL after them, so a read
 * past the end shows under ASan) give the same db as the file; the name given
 * must match the GPU block, and bad text is refused as a bad file is. */
static void test_parse(const char *dir) {
    char path[4400];
    path_for(dir, &H100, path, sizeof path);
    size_t len = 0;
    char *text = slurp(path, &len); /* from test_round_trip */
    char *bytes = text ? malloc(len) : NULL;
    CHECK(bytes != NULL);
    if (!bytes) {
        free(text);
        return;
    }
    memcpy(bytes, text, len);
    sp_db *db = NULL;
    CHECK_MSG(sp_db_parse(&db, bytes, len, path, &H100) == SPRIG_OK, "%s", sprig_last_error());
    CHECK(db && db->n == 2 && !strcmp(db->path, path) && db->nvrtc_version == 13000);
    if (db) CHECK(!strcmp(db->entries[0].winner, "op=down,threads=256") || !strcmp(db->entries[1].winner, "op=down,threads=256"));
    sp_db_close(db);
    db = NULL;
    CHECK(sp_db_parse(&db, bytes, len, "anywhere/NVIDIA_H100_80GB_HBM3-sm90-132sm.json", NULL) == SPRIG_OK && db);
    sp_db_close(db);
    db = (sp_db *)1;
    CHECK(sp_db_parse(&db, bytes, len, "anywhere/other.json", NULL) == SPRIG_E_FORMAT && db == NULL);
    CHECK_MSG(sp_contains(sprig_last_error(), "anywhere/other.json") && sp_contains(sprig_last_error(), "foreign"),
              "got %s", sprig_last_error());
    CHECK(sp_db_parse(&db, bytes, len, path, &A100) == SPRIG_E_FORMAT && db == NULL);
    CHECK(sp_db_parse(&db, bytes, len / 2, path, &H100) == SPRIG_E_FORMAT && sp_contains(sprig_last_error(), "truncated"));
    bytes[len / 2] = '\0';
    CHECK(sp_db_parse(&db, bytes, len, path, &H100) == SPRIG_E_FORMAT && sp_contains(sprig_last_error(), "NUL bytes"));
    CHECK(sp_db_parse(&db, NULL, 0, path, &H100) == SPRIG_E_FORMAT && sp_contains(sprig_last_error(), "empty"));
    free(bytes);
    free(text);
}

/* Every kind of unusable file: SPRIG_E_FORMAT naming the file and reason,
 * no data used, the file left as it was. */
static void expect_unusable(const char *dir, const char *text, size_t len, const char *reason) {
    char path[4400];
    path_for(dir, &H100, path, sizeof path);
    spit(path, text, len);
    sp_db *db = (sp_db *)1;
    sprig_status st = sp_db_open(&db, dir, &H100, 0);
    CHECK_MSG(st == SPRIG_E_FORMAT && db == NULL, "%s: status %s", reason, sprig_status_name(st));
    CHECK_MSG(sp_contains(sprig_last_error(), path), "%s: message does not name the file: %s", reason, sprig_last_error());
    CHECK_MSG(sp_contains(sprig_last_error(), reason), "%s: got '%s'", reason, sprig_last_error());
    size_t now_len = 0;
    char *now = slurp(path, &now_len);
    CHECK_MSG(now && now_len == len && !memcmp(now, text, len), "%s: the file was modified", reason);
    free(now);
}

static void test_unusable(const char *dir) {
    char path[4400];
    path_for(dir, &H100, path, sizeof path);
    size_t len = 0;
    char *good = slurp(path, &len); /* from test_round_trip */
    CHECK(good && len > 100);
    if (!good) return;

    expect_unusable(dir, good, len / 2, "truncated");
    expect_unusable(dir, "hello{ world", 12, "invalid or truncated JSON");
    expect_unusable(dir, "", 0, "empty");
    expect_unusable(dir, "[1, 2, 3]", 9, "not a JSON object");
    /* edits of a good file through cJSON: still valid JSON, wrong content */
    cJSON *root = cJSON_Parse(good);
    CHECK(root != NULL);
    if (root) {
        cJSON_ReplaceItemInObject(root, "version", cJSON_CreateNumber(2));
        char *text = cJSON_Print(root);
        expect_unusable(dir, text, strlen(text), "format version 2, but this sprig reads version 1");
        free(text);
        cJSON_ReplaceItemInObject(root, "version", cJSON_CreateNumber(1));
        /* a winner recorded as wrong is refused: a wrong candidate is never chosen */
        cJSON *entries = cJSON_GetObjectItem(root, "entries");
        cJSON *first = entries ? entries->child : NULL;
        CHECK(first != NULL);
        if (first) cJSON_ReplaceItemInObject(first, "winner", cJSON_CreateString("threads=64"));
        text = cJSON_Print(root);
        expect_unusable(dir, text, strlen(text), "recorded as wrong");
        free(text);
        cJSON_Delete(root);
    }

    /* foreign: a valid file for another GPU under this GPU's name */
    char other_dir[4300];
    snprintf(other_dir, sizeof other_dir, "%s/other", dir);
    sp_db *o = NULL;
    CHECK(sp_db_open(&o, other_dir, &A100, 0) == SPRIG_OK);
    if (o) {
        put(o, "dense_gemv", HASH, 4096, 11008, "fp16", 1, 0, "op=up", "op=up,threads=64", 40);
        CHECK(sp_db_save(o) == SPRIG_OK);
        size_t flen = 0;
        char *foreign = slurp(o->path, &flen);
        if (foreign) expect_unusable(dir, foreign, flen, "foreign");
        free(foreign);
        unlink(o->path);
        sp_db_close(o);
    }
    rmdir(other_dir);

    /* force: an empty db is handed out; saving is refused while force is off,
     * and with force the bad file is moved aside, not lost. */
    spit(path, good, len / 3);
    sp_db *db = NULL;
    CHECK(sp_db_open(&db, dir, &H100, 1) == SPRIG_OK && db && db->load_failed && db->n == 0);
    if (db) {
        CHECK(sp_contains(db->load_error, "truncated"));
        db->force = 0;
        CHECK(sp_db_save(db) == SPRIG_E_FORMAT);
        CHECK_MSG(sp_contains(sprig_last_error(), "refusing to overwrite"), "got %s", sprig_last_error());
        size_t now_len = 0;
        char *now = slurp(path, &now_len);
        CHECK(now && now_len == len / 3);
        free(now);
        db->force = 1;
        put(db, "dense_gemv", HASH, 4096, 11008, "fp16", 1, 0, "op=up", "op=up,threads=128", 22);
        CHECK_MSG(sp_db_save(db) == SPRIG_OK, "%s", sprig_last_error());
        CHECK(sp_test_count_files(dir, ".bad-") == 1);
        sp_db_close(db);
        db = NULL;
        CHECK(sp_db_open(&db, dir, &H100, 0) == SPRIG_OK && db && db->n == 1);
        sp_db_close(db);
    }
    /* restore the two-entry file for later cases, drop the moved-aside copy */
    spit(path, good, len);
    DIR *dp = opendir(dir);
    for (struct dirent *de; dp && (de = readdir(dp));)
        if (strstr(de->d_name, ".bad-")) {
            char p[4400];
            snprintf(p, sizeof p, "%s/%s", dir, de->d_name);
            unlink(p);
        }
    if (dp) closedir(dp);
    free(good);
}

/* ---- lookup ------------------------------------------------------------------------------ */

static int reject_ctx_calls;
static int reject_threads128(void *ctx, const sp_db_key *want, const char *params) {
    (void)want;
    ++reject_ctx_calls;
    return strcmp(params, (const char *)ctx) != 0;
}

static void lookup(const sp_db_set *set, const sp_gpu_id *gpu, const char *dtype, int d, int f, int batch,
                   double sparsity, const char *fixed, uint64_t hash, sp_lookup_result *r) {
    sp_db_key k;
    CHECK(sp_db_key_make(&k, "dense_gemv", hash, d, f, dtype, batch, sparsity, 32, fixed) == SPRIG_OK);
    CHECK(sp_db_lookup(set, gpu, &k, NULL, NULL, r) == SPRIG_OK);
}

static void test_lookup(const char *dir) {
    char sub[4300];
    snprintf(sub, sizeof sub, "%s/lookup", dir);
    sp_db *a = NULL, *b = NULL, *c = NULL;
    CHECK(sp_db_open(&a, sub, &H100, 0) == SPRIG_OK);
    CHECK(sp_db_open(&b, sub, &H800, 0) == SPRIG_OK);
    CHECK(sp_db_open(&c, sub, &A100, 0) == SPRIG_OK);
    if (!a || !b || !c) return;
    put(a, "dense_gemv", HASH, 4096, 11008, "fp16", 1, 0, "op=up", "A_4096_b1", 20);
    put(a, "dense_gemv", HASH, 4096, 11008, "fp16", 8, 0, "op=up", "A_4096_b8", 40);
    put(a, "dense_gemv", HASH, 3072, 11008, "fp16", 1, 0, "op=up", "A_3072_b1", 16);
    put(a, "dense_gemv", OLD_HASH, 5120, 13824, "fp16", 1, 0, "op=up", "A_5120_stale", 30);
    put(b, "dense_gemv", HASH, 4096, 11008, "bf16", 1, 0, "op=up", "B_bf16", 21);
    put(c, "dense_gemv", HASH, 4096, 11008, "fp16", 1, 0, "op=down", "C_down", 50);
    CHECK(sp_db_save(a) == SPRIG_OK && sp_db_save(b) == SPRIG_OK && sp_db_save(c) == SPRIG_OK);
    sp_db_close(a);
    sp_db_close(b);
    sp_db_close(c);
    /* an unusable file in the folder is skipped, and named in the notes */
    char junk[4400];
    snprintf(junk, sizeof junk, "%s/Broken_GPU-sm90-1sm.json", sub);
    spit(junk, "{\"format\": \"sprig-tuning-db\", \"vers", 35);

    sp_db_set set;
    sp_db_set_init(&set);
    CHECK(sp_db_set_add_dir(&set, sub) == SPRIG_OK);
    CHECK_MSG(set.n == 3, "loaded %zu files", set.n);
    CHECK(set.notes && sp_contains(set.notes, "Broken_GPU-sm90-1sm.json") && sp_contains(set.notes, "truncated"));

    sp_lookup_result r;
    /* exact */
    lookup(&set, &H100, "fp16", 4096, 11008, 1, 0, "op=up", HASH, &r);
    CHECK(r.source == SP_LOOKUP_EXACT && !strcmp(r.params, "A_4096_b1") && r.entry);
    CHECK_MSG(sp_contains(r.explain, "exact:"), "%s", r.explain);
    /* nearest shape on this GPU: 4096x14336 is nearer 4096x11008 than 3072x11008 */
    lookup(&set, &H100, "fp16", 4096, 14336, 1, 0, "op=up", HASH, &r);
    CHECK(r.source == SP_LOOKUP_SAME_GPU_NEAREST && !strcmp(r.params, "A_4096_b1"));
    CHECK_MSG(sp_contains(r.explain, "same_gpu_nearest_shape") && sp_contains(r.explain, "d=4096 f=11008"), "%s", r.explain);
    lookup(&set, &H100, "fp16", 2864, 11008, 1, 0, "op=up", HASH, &r);
    CHECK(r.source == SP_LOOKUP_SAME_GPU_NEAREST && !strcmp(r.params, "A_3072_b1"));
    /* nearest batch bucket at the same shape: 16 is one step from 8, three from 1 */
    lookup(&set, &H100, "fp16", 4096, 11008, 16, 0, "op=up", HASH, &r);
    CHECK(r.source == SP_LOOKUP_SAME_GPU_NEAREST && !strcmp(r.params, "A_4096_b8"));
    /* the sparsity bucket is part of the point: 90% has no exact entry */
    lookup(&set, &H100, "fp16", 4096, 11008, 1, 90, "op=up", HASH, &r);
    CHECK(r.source == SP_LOOKUP_SAME_GPU_NEAREST && !strcmp(r.params, "A_4096_b1"));
    /* an entry for this exact point with another template hash is not used, and said so */
    lookup(&set, &H100, "fp16", 5120, 13824, 1, 0, "op=up", HASH, &r);
    CHECK(r.source == SP_LOOKUP_SAME_GPU_NEAREST && !strcmp(r.params, "A_4096_b1"));
    CHECK_MSG(sp_contains(r.explain, "different template"), "%s", r.explain);
    /* ... and is exact for a caller on that old template */
    lookup(&set, &H100, "fp16", 5120, 13824, 1, 0, "op=up", OLD_HASH, &r);
    CHECK(r.source == SP_LOOKUP_EXACT && !strcmp(r.params, "A_5120_stale"));
    /* same architecture: H100 has no bf16 entry, the H800 (also sm_90) has */
    lookup(&set, &H100, "bf16", 4096, 11008, 1, 0, "op=up", HASH, &r);
    CHECK(r.source == SP_LOOKUP_SAME_ARCH && !strcmp(r.params, "B_bf16"));
    CHECK_MSG(sp_contains(r.explain, "NVIDIA H800") && sp_contains(r.explain, "exact point"), "%s", r.explain);
    lookup(&set, &H100, "bf16", 5120, 13824, 4, 0, "op=up", HASH, &r);
    CHECK(r.source == SP_LOOKUP_SAME_ARCH && !strcmp(r.params, "B_bf16") && sp_contains(r.explain, "nearest point"));
    /* generic default: op=down exists only on the A100 (sm_80), another architecture */
    lookup(&set, &H100, "fp16", 4096, 11008, 1, 0, "op=down", HASH, &r);
    CHECK(r.source == SP_LOOKUP_GENERIC_DEFAULT && !strcmp(r.params, "op=down") && r.entry == NULL);
    CHECK_MSG(sp_contains(r.explain, "generic_default") && sp_contains(r.explain, "defaults"), "%s", r.explain);
    /* ... which the A100 itself finds exactly */
    lookup(&set, &A100, "fp16", 4096, 11008, 1, 0, "op=down", HASH, &r);
    CHECK(r.source == SP_LOOKUP_EXACT && !strcmp(r.params, "C_down"));
    /* a GPU with no file at all, of an architecture nobody tuned */
    sp_gpu_id l4 = {"NVIDIA L4", 8, 9, 58};
    lookup(&set, &l4, "fp16", 4096, 11008, 1, 0, "op=up", HASH, &r);
    CHECK(r.source == SP_LOOKUP_GENERIC_DEFAULT && !strcmp(r.params, "op=up"));
    /* the validity filter passes over an entry it rejects */
    sp_db_key k;
    sp_db_key_make(&k, "dense_gemv", HASH, 4096, 11008, "fp16", 1, 0, 32, "op=up");
    CHECK(sp_db_lookup(&set, &H100, &k, reject_threads128, "A_4096_b1", &r) == SPRIG_OK);
    CHECK(reject_ctx_calls > 0 && r.source == SP_LOOKUP_SAME_GPU_NEAREST && strcmp(r.params, "A_4096_b1") != 0);
    CHECK_MSG(sp_contains(r.explain, "rejected as invalid"), "%s", r.explain);
    sp_db_set_free(&set);

    /* an empty set: generic default, not an error */
    sp_db_set_init(&set);
    lookup(&set, &H100, "fp16", 4096, 11008, 1, 0, "", HASH, &r);
    CHECK(r.source == SP_LOOKUP_GENERIC_DEFAULT && r.params[0] == '\0');
    sp_db_set_free(&set);
    sp_test_remove_dir(sub);
}

/* Two processes' databases on one GPU file: each save merges what the other
 * saved, so neither loses the other's entries. */
static void test_concurrent(const char *dir) {
    sp_db *a = NULL, *b = NULL;
    const sp_gpu_id h200 = {"NVIDIA H200", 9, 0, 132};
    CHECK(sp_db_open(&a, dir, &h200, 0) == SPRIG_OK && sp_db_open(&b, dir, &h200, 0) == SPRIG_OK);
    if (a && b) {
        put(a, "dense_gemv", HASH, 4096, 11008, "fp16", 1, 0, "op=up", "op=up,threads=128", 21.5);
        CHECK(sp_db_save(a) == SPRIG_OK);
        put(b, "dense_gemv", HASH, 4096, 11008, "fp16", 1, 0, "op=down", "op=down,threads=256", 30.0);
        CHECK(sp_db_save(b) == SPRIG_OK);
        put(a, "router", HASH, 4096, 11008, "fp16", 1, 50, "score=sigmoid", "score=sigmoid,threads=256", 3.0);
        CHECK(sp_db_save(a) == SPRIG_OK);
    }
    sp_db_close(a);
    sp_db_close(b);
    sp_db *c = NULL;
    CHECK(sp_db_open(&c, dir, &h200, 0) == SPRIG_OK);
    CHECK_MSG(c && c->n == 3, "%zu entries after two processes saved 3", c ? c->n : 0);
    sp_db_close(c);
}

int main(void) {
    char dir[] = "/tmp/sprig_test_db_XXXXXX";
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    test_keys();
    test_round_trip(dir);
    test_parse(dir);
    test_unusable(dir);
    test_lookup(dir);
    test_concurrent(dir);
    sp_test_remove_dir(dir);
    return sp_test_finish("test_db", 0);
}
