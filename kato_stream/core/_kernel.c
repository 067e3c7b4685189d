/*
 * kato_stream.core._kernel: KATO's full prediction path (predictor.kernel_path) for
 * many int-coded patterns against one int-coded state.
 *
 * Blocks: exactly kato_stream/core/matcher.py (difflib.SequenceMatcher with no junk and no
 * autojunk): greedy longest match (ties: smallest i, then smallest j), recursion on the left
 * and right remainders, sort, merge of adjacent blocks.  The longest match of a box is taken
 * from the maximal common runs of (P, state), clipped to the box (see longest_match).
 *
 * scan()/prepot() return per candidate what predictor.matching.pre_potential needs (spec 5.3 C, 5.4):
 *   M     = len(matches)   (sum of block sizes of blocks(P, state))
 *   E     = len(extras_flat) = len(state) - matched size of blocks(present_flat, state)
 *           (= len(state) - M, see py_prepot)
 *   NB    = number of merged blocks (sentinel excluded)
 *   PLEN  = total symbols of the present events (after the "matches[0] in past[-1]" fix-up)
 * scan() also computes the exact token LCS (bit-parallel) and the similarity test.
 * survivors(), ensemble(), future_groups(), lists() and futures() compute the ensemble
 * statistics and output lists of the pruned candidates.
 *
 * Floats: every float that reaches an output is computed with the same IEEE operations in
 * the same order as the pure-Python path (tests/core/test_kernel.py compares both byte for
 * byte).  libm's log/log2/log10/pow are the functions Python's math module and float ** call;
 * products that feed an addition go through mulr() so that no compiler can contract them
 * into a fused multiply-add; constants that Python computes (log10(1e-10), the cutoff) are
 * passed in rather than folded by the compiler.
 *
 * Only the CPython C API is used.  Buffers are plain C-contiguous memory (numpy arrays);
 * the Python wrapper (kernel.py) guarantees dtypes: int32 tokens, int64 offsets.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>

typedef struct {
    /* state side */
    int ns;           /* len(state) */
    int ds;           /* distinct symbols of the state */
    int *b;           /* state as symbol ids 0..ds-1 */
    int *pstart;      /* ds+1: positions of id s are plist[pstart[s]:pstart[s+1]] (ascending) */
    int *plist;       /* ns */
    int32_t *hkeys;   /* open-addressing table token -> id */
    int *hvals;
    uint32_t hmask;
    /* scratch */
    int *tcur;        /* ns+1: cursor scratch */
    int *stack;       /* 4 ints per entry */
    int *fi, *fj, *fk; /* found blocks */
    int *a;           /* pattern as state ids (-1: not in state) */
    int *hits;        /* positions i with a[i] >= 0, ascending */
    int cap_a;
    int *mi, *mj, *mk; /* merged blocks */
    int *ri, *rj, *rl; /* maximal common runs of (a, b), ascending (i, j) */
    int cap_r;
} Ctx;

static uint32_t hash32(int32_t x) {
    uint32_t h = (uint32_t)x * 2654435761u;
    return h ^ (h >> 16);
}

static int lookup(const Ctx *c, int32_t key) {
    uint32_t h = hash32(key) & c->hmask;
    for (;;) {
        int v = c->hvals[h];
        if (v < 0) return -1;
        if (c->hkeys[h] == key) return v;
        h = (h + 1) & c->hmask;
    }
}

static void ctx_free(Ctx *c) {
    free(c->b); free(c->pstart); free(c->plist); free(c->hkeys); free(c->hvals);
    free(c->tcur); free(c->stack);
    free(c->fi); free(c->fj); free(c->fk); free(c->a); free(c->hits); free(c->mi); free(c->mj); free(c->mk);
    free(c->ri); free(c->rj); free(c->rl);
    memset(c, 0, sizeof(*c));
}

/* Build the state side; cap_a = longest pattern to be processed. 0 on success. */
static int ctx_init(Ctx *c, const int32_t *state, int ns, int cap_a) {
    memset(c, 0, sizeof(*c));
    c->ns = ns;
    uint32_t hsize = 8;
    while (hsize < (uint32_t)(4 * ns + 8)) hsize <<= 1;
    c->hmask = hsize - 1;
    int nmin = (cap_a < ns ? cap_a : ns) + 2;
    if (cap_a < 1) cap_a = 1;
    c->cap_a = cap_a;
    c->b = malloc(sizeof(int) * (ns + 1));
    c->pstart = calloc(ns + 2, sizeof(int));
    c->plist = malloc(sizeof(int) * (ns + 1));
    c->hkeys = malloc(sizeof(int32_t) * hsize);
    c->hvals = malloc(sizeof(int) * hsize);
    c->tcur = malloc(sizeof(int) * (ns + 1));
    c->stack = malloc(sizeof(int) * 4 * (2 * nmin + 4));
    c->fi = malloc(sizeof(int) * nmin);
    c->fj = malloc(sizeof(int) * nmin);
    c->fk = malloc(sizeof(int) * nmin);
    c->mi = malloc(sizeof(int) * nmin);
    c->mj = malloc(sizeof(int) * nmin);
    c->mk = malloc(sizeof(int) * nmin);
    c->a = malloc(sizeof(int) * cap_a);
    c->hits = malloc(sizeof(int) * cap_a);
    if (!c->b || !c->pstart || !c->plist || !c->hkeys || !c->hvals || !c->tcur || !c->stack || !c->fi || !c->fj || !c->fk || !c->mi ||
        !c->mj || !c->mk || !c->a || !c->hits) {
        ctx_free(c);
        return -1;
    }
    for (uint32_t h = 0; h < hsize; h++) c->hvals[h] = -1;
    int ds = 0;
    for (int j = 0; j < ns; j++) {
        int32_t key = state[j];
        uint32_t h = hash32(key) & c->hmask;
        int id = -1;
        for (;;) {
            if (c->hvals[h] < 0) {
                c->hkeys[h] = key;
                c->hvals[h] = id = ds++;
                break;
            }
            if (c->hkeys[h] == key) {
                id = c->hvals[h];
                break;
            }
            h = (h + 1) & c->hmask;
        }
        c->b[j] = id;
        c->pstart[id + 1]++;
    }
    c->ds = ds;
    for (int s = 0; s < ds; s++) c->pstart[s + 1] += c->pstart[s];
    /* fill positions ascending: use tcur as a cursor array (size >= ds) */
    for (int s = 0; s < ds; s++) c->tcur[s] = c->pstart[s];
    for (int j = 0; j < ns; j++) c->plist[c->tcur[c->b[j]]++] = j;
    /* runs: at most one per matching pair (i, j), i.e. cap_a * (largest multiplicity) */
    int mult = 1;
    for (int s = 0; s < ds; s++)
        if (c->pstart[s + 1] - c->pstart[s] > mult) mult = c->pstart[s + 1] - c->pstart[s];
    c->cap_r = cap_a * mult;
    c->ri = malloc(sizeof(int) * c->cap_r);
    c->rj = malloc(sizeof(int) * c->cap_r);
    c->rl = malloc(sizeof(int) * c->cap_r);
    if (!c->ri || !c->rj || !c->rl) {
        ctx_free(c);
        return -1;
    }
    return 0;
}

/* The maximal common runs ("diagonals") of a[0:la] and the state: (i, j, len) with
   a[i:i+len] == b[j:j+len], not extendable left or right, in ascending (i, j).  Returns
   their number. */
static int find_runs(Ctx *c, const int *a, int la, const int *hits, int nh) {
    const int *b = c->b;
    int ns = c->ns, nr = 0;
    for (int h = 0; h < nh; h++) {
        int i = hits[h];
        int s = a[i];
        int qe = c->pstart[s + 1];
        for (int q = c->pstart[s]; q < qe; q++) {
            int j = c->plist[q];
            if (i > 0 && j > 0 && a[i - 1] == b[j - 1]) continue; /* inside a run */
            int len = 1;
            while (i + len < la && j + len < ns && a[i + len] == b[j + len]) len++;
            c->ri[nr] = i; c->rj[nr] = j; c->rl[nr] = len; nr++;
        }
    }
    return nr;
}

/* longest_match() of the full box: the first longest run (runs are in ascending (i, j)). */
static void longest_run(const Ctx *c, int nr, int *oi, int *oj, int *ok) {
    int best = -1, bk = 0;
    for (int r = 0; r < nr; r++)
        if (c->rl[r] > bk) { bk = c->rl[r]; best = r; }
    *oi = best >= 0 ? c->ri[best] : 0;
    *oj = best >= 0 ? c->rj[best] : 0;
    *ok = bk;
}

/* Does any run reach into the box before (i0, j0) or the box after (i1, j1)?  A run meets
   [0, i0) x [0, j0) iff it starts there; it meets [i1, la) x [j1, ns) iff it ends there. */
static int outer_boxes_have_run(const Ctx *c, int nr, int i0, int j0, int i1, int j1) {
    for (int r = 0; r < nr; r++) {
        int ri = c->ri[r], rj = c->rj[r], rl = c->rl[r];
        if ((ri < i0 && rj < j0) || (ri + rl > i1 && rj + rl > j1)) return 1;
    }
    return 0;
}

/* difflib find_longest_match(alo, ahi, blo, bhi) with an empty junk set, from the runs.
   difflib scans i upward, then j upward, and keeps the first strictly longer run ending at
   (i, j) within the box; with no junk its extension loops never extend.  A run clipped to
   the box is one contiguous segment of its diagonal, so the answer is the longest clipped
   run, ties to the smallest start i, then the smallest start j (equal lengths: the smallest
   end is the smallest start). */
static void longest_match(const Ctx *c, int nr, int alo, int ahi, int blo, int bhi,
                          int *oi, int *oj, int *ok) {
    int bi = alo, bj = blo, bk = 0;
    for (int r = 0; r < nr; r++) {
        int ri = c->ri[r];
        if (ri >= ahi) break; /* ascending i */
        int rl = c->rl[r];
        if (ri + rl <= alo) continue;
        int d = c->rj[r] - ri;
        int st = ri;
        if (alo > st) st = alo;
        if (blo - d > st) st = blo - d;
        int en = ri + rl;
        if (ahi < en) en = ahi;
        if (bhi - d < en) en = bhi - d;
        int k = en - st;
        if (k > bk || (k == bk && k > 0 && (st < bi || (st == bi && st + d < bj)))) {
            bi = st; bj = st + d; bk = k;
        }
    }
    *oi = bi; *oj = bj; *ok = bk;
}

/* get_matching_blocks() of a[0:la] vs the state, merged, sentinel excluded, given the
   positions hits[0:nh] of a that occur in the state (ascending).
   Blocks go to c->mi/mj/mk; returns their count; *total = sum of sizes. */
static int blocks_from_runs(Ctx *c, int la, int nr, int ri, int rj, int rk, int *total);

static int matching_blocks_h(Ctx *c, const int *a, int la, const int *hits, int nh,
                             int *total) {
    int nr = find_runs(c, a, la, hits, nh);
    int ri, rj, rk;
    longest_run(c, nr, &ri, &rj, &rk);
    return blocks_from_runs(c, la, nr, ri, rj, rk, total);
}

/* The recursion of get_matching_blocks() over the runs, given the root's longest match
   (ri, rj, rk) of the full box, then sort and merge (see matching_blocks_h). */
static int blocks_from_runs(Ctx *c, int la, int nr, int ri, int rj, int rk, int *total) {
    int lb = c->ns;
    int *st = c->stack;
    int sp = 0, nf = 0;
    if (rk) {
        c->fi[0] = ri; c->fj[0] = rj; c->fk[0] = rk; nf = 1;
        if (0 < ri && 0 < rj) {
            int *e = st + 4 * sp++;
            e[0] = 0; e[1] = ri; e[2] = 0; e[3] = rj;
        }
        if (ri + rk < la && rj + rk < lb) {
            int *e = st + 4 * sp++;
            e[0] = ri + rk; e[1] = la; e[2] = rj + rk; e[3] = lb;
        }
    }
    while (sp > 0) {
        sp--;
        int alo = st[4 * sp], ahi = st[4 * sp + 1], blo = st[4 * sp + 2], bhi = st[4 * sp + 3];
        int i, j, k;
        longest_match(c, nr, alo, ahi, blo, bhi, &i, &j, &k);
        if (k) {
            c->fi[nf] = i; c->fj[nf] = j; c->fk[nf] = k; nf++;
            if (alo < i && blo < j) {
                int *e = st + 4 * sp++;
                e[0] = alo; e[1] = i; e[2] = blo; e[3] = j;
            }
            if (i + k < ahi && j + k < bhi) {
                int *e = st + 4 * sp++;
                e[0] = i + k; e[1] = ahi; e[2] = j + k; e[3] = bhi;
            }
        }
    }
    /* sort by (i, j, k): insertion sort, blocks are few */
    for (int p = 1; p < nf; p++) {
        int bi = c->fi[p], bj = c->fj[p], bk = c->fk[p];
        int q = p - 1;
        while (q >= 0 && (c->fi[q] > bi || (c->fi[q] == bi && (c->fj[q] > bj ||
                                             (c->fj[q] == bj && c->fk[q] > bk))))) {
            c->fi[q + 1] = c->fi[q]; c->fj[q + 1] = c->fj[q]; c->fk[q + 1] = c->fk[q];
            q--;
        }
        c->fi[q + 1] = bi; c->fj[q + 1] = bj; c->fk[q + 1] = bk;
    }
    int i1 = 0, j1 = 0, k1 = 0, nm = 0, tot = 0;
    for (int p = 0; p < nf; p++) {
        int i2 = c->fi[p], j2 = c->fj[p], k2 = c->fk[p];
        tot += k2;
        if (i1 + k1 == i2 && j1 + k1 == j2) {
            k1 += k2;
        } else {
            if (k1) { c->mi[nm] = i1; c->mj[nm] = j1; c->mk[nm] = k1; nm++; }
            i1 = i2; j1 = j2; k1 = k2;
        }
    }
    if (k1) { c->mi[nm] = i1; c->mj[nm] = j1; c->mk[nm] = k1; nm++; }
    *total = tot;
    return nm;
}

static int matching_blocks(Ctx *c, const int *a, int la, int *total) {
    int nh = 0;
    for (int i = 0; i < la; i++)
        if (a[i] >= 0) c->hits[nh++] = i;
    return matching_blocks_h(c, a, la, c->hits, nh, total);
}

static void map_pattern(Ctx *c, const int32_t *p, int la) {
    for (int i = 0; i < la; i++) c->a[i] = lookup(c, p[i]);
}

/* ---- buffers ------------------------------------------------------------------------ */

static int get_buf(PyObject *obj, Py_buffer *view, Py_ssize_t itemsize, int writable,
                   const char *what) {
    if (PyObject_GetBuffer(obj, view, (writable ? PyBUF_WRITABLE : 0) | PyBUF_C_CONTIGUOUS) < 0)
        return -1;
    if (view->len % itemsize != 0) {
        PyErr_Format(PyExc_ValueError, "%s: buffer length not a multiple of %zd", what, itemsize);
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

/* blocks(a, b) -> [(i, j, k), ..., (len(a), len(b), 0)]  (int32 buffers) */
static PyObject *py_blocks(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *oa, *ob;
    if (!PyArg_ParseTuple(args, "OO", &oa, &ob)) return NULL;
    Py_buffer va, vb;
    if (get_buf(oa, &va, 4, 0, "a") < 0) return NULL;
    if (get_buf(ob, &vb, 4, 0, "b") < 0) { PyBuffer_Release(&va); return NULL; }
    int la = (int)(va.len / 4), lb = (int)(vb.len / 4);
    Ctx c;
    PyObject *out = NULL;
    if (ctx_init(&c, (const int32_t *)vb.buf, lb, la) < 0) {
        PyErr_NoMemory();
        goto done;
    }
    map_pattern(&c, (const int32_t *)va.buf, la);
    int tot;
    int nm = matching_blocks(&c, c.a, la, &tot);
    out = PyList_New(nm + 1);
    if (out) {
        for (int p = 0; p < nm; p++) {
            PyObject *t = Py_BuildValue("(iii)", c.mi[p], c.mj[p], c.mk[p]);
            if (!t) { Py_CLEAR(out); break; }
            PyList_SET_ITEM(out, p, t);
        }
        if (out) {
            PyObject *t = Py_BuildValue("(iii)", la, lb, 0);
            if (!t) Py_CLEAR(out);
            else PyList_SET_ITEM(out, nm, t);
        }
    }
    ctx_free(&c);
done:
    PyBuffer_Release(&va);
    PyBuffer_Release(&vb);
    return out;
}

/* prepot(flat i32, offs i64, evlen i32, evoffs i64, sel i64, state i32,
          out_m i32, out_e i32, out_nb i32, out_plen i32) -> None */
static PyObject *py_prepot(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *o[10];
    if (!PyArg_ParseTuple(args, "OOOOOOOOOO", &o[0], &o[1], &o[2], &o[3], &o[4], &o[5], &o[6],
                          &o[7], &o[8], &o[9]))
        return NULL;
    static const Py_ssize_t isz[10] = {4, 8, 4, 8, 8, 4, 4, 4, 4, 4};
    static const char *names[10] = {"flat", "offs", "evlen", "evoffs", "sel",
                                    "state", "out_m", "out_e", "out_nb", "out_plen"};
    Py_buffer v[10];
    int got = 0;
    PyObject *ret = NULL;
    for (; got < 10; got++)
        if (get_buf(o[got], &v[got], isz[got], got >= 6, names[got]) < 0) goto release;
    const int32_t *flat = v[0].buf;
    const int64_t *offs = v[1].buf;
    const int32_t *evlen = v[2].buf;
    const int64_t *evoffs = v[3].buf;
    const int64_t *sel = v[4].buf;
    const int32_t *state = v[5].buf;
    int32_t *om = v[6].buf, *oe = v[7].buf, *onb = v[8].buf, *opl = v[9].buf;
    Py_ssize_t npat = v[1].len / 8 - 1, nev_tot = v[2].len / 4, nflat = v[0].len / 4;
    Py_ssize_t n = v[4].len / 8;
    int ns = (int)(v[5].len / 4);
    if (npat < 0 || v[3].len / 8 != npat + 1 || v[6].len / 4 < n || v[7].len / 4 < n ||
        v[8].len / 4 < n || v[9].len / 4 < n) {
        PyErr_SetString(PyExc_ValueError, "prepot: inconsistent buffer sizes");
        goto release;
    }
    int maxla = 1;
    for (Py_ssize_t q = 0; q < n; q++) {
        int64_t p = sel[q];
        if (p < 0 || p >= npat || offs[p] < 0 || offs[p + 1] < offs[p] || offs[p + 1] > nflat ||
            evoffs[p] < 0 || evoffs[p + 1] < evoffs[p] || evoffs[p + 1] > nev_tot) {
            PyErr_SetString(PyExc_IndexError, "prepot: pattern index or offsets out of range");
            goto release;
        }
        int la = (int)(offs[p + 1] - offs[p]);
        if (la > maxla) maxla = la;
    }
    Ctx c;
    if (ctx_init(&c, state, ns, maxla) < 0) {
        PyErr_NoMemory();
        goto release;
    }
    for (Py_ssize_t q = 0; q < n; q++) {
        int64_t p = sel[q];
        int la = (int)(offs[p + 1] - offs[p]);
        map_pattern(&c, flat + offs[p], la);
        int m;
        int nb = matching_blocks(&c, c.a, la, &m);
        int i0 = 0, end = la, j0 = 0;
        if (nb > 0) {
            i0 = c.mi[0];
            j0 = c.mj[0];
            end = c.mi[nb - 1] + c.mk[nb - 1];
        }
        /* E: the blocks of (present_flat, state) are the blocks of (P, state) shifted by i0.
           Every block of (P, state) lies in [i0, end), so in each recursive sub-problem the
           longest match of the clipped a-range is the same (i, j, k) (a run of the clipped
           range is a run of the full one, and the full one's choice lies inside the clipped
           range), by induction on the recursion.  Hence the matched size is M and
           E = len(state) - M (tests/core/test_kernel.py checks it against difflib). */
        int m2 = m;
        /* event mapping with flat counts (predictor.matching.build_candidate) */
        const int32_t *ev = evlen + evoffs[p];
        int nev = (int)(evoffs[p + 1] - evoffs[p]);
        int c1 = i0, c2 = 0, e = 0;
        while (c2 < c1 && e < nev) c2 += ev[e++];
        int e1 = e, cpast = c2;
        c1 += end - i0;
        while (c2 < c1 && e < nev) c2 += ev[e++];
        int plen = c2 - cpast;
        if (e1 > 0 && m > 0) {
            int sid = c.b[j0];
            int start = cpast - ev[e1 - 1];
            for (int t = start; t < cpast; t++) {
                if (c.a[t] == sid) {
                    plen += ev[e1 - 1];
                    break;
                }
            }
        }
        om[q] = m;
        oe[q] = ns - m2;
        onb[q] = nb;
        opl[q] = plen;
    }
    ctx_free(&c);
    ret = Py_None;
    Py_INCREF(ret);
release:
    for (int k = 0; k < got; k++) PyBuffer_Release(&v[k]);
    return ret;
}

/* blocks_batch(flat i32, offs i64, sel i64, state i32) -> [[(i, j, k), ...], ...]
   (sentinel excluded) */
static PyObject *py_blocks_batch(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *o[4];
    if (!PyArg_ParseTuple(args, "OOOO", &o[0], &o[1], &o[2], &o[3])) return NULL;
    static const Py_ssize_t isz[4] = {4, 8, 8, 4};
    static const char *names[4] = {"flat", "offs", "sel", "state"};
    Py_buffer v[4];
    int got = 0;
    PyObject *out = NULL;
    for (; got < 4; got++)
        if (get_buf(o[got], &v[got], isz[got], 0, names[got]) < 0) goto release;
    const int32_t *flat = v[0].buf;
    const int64_t *offs = v[1].buf;
    const int64_t *sel = v[2].buf;
    Py_ssize_t npat = v[1].len / 8 - 1, nflat = v[0].len / 4, n = v[2].len / 8;
    int ns = (int)(v[3].len / 4);
    int maxla = 1;
    for (Py_ssize_t q = 0; q < n; q++) {
        int64_t p = sel[q];
        if (p < 0 || p >= npat || offs[p] < 0 || offs[p + 1] < offs[p] || offs[p + 1] > nflat) {
            PyErr_SetString(PyExc_IndexError, "blocks_batch: pattern index out of range");
            goto release;
        }
        int la = (int)(offs[p + 1] - offs[p]);
        if (la > maxla) maxla = la;
    }
    Ctx c;
    if (ctx_init(&c, v[3].buf, ns, maxla) < 0) {
        PyErr_NoMemory();
        goto release;
    }
    out = PyList_New(n);
    if (!out) goto free_ctx;
    for (Py_ssize_t q = 0; q < n; q++) {
        int64_t p = sel[q];
        int la = (int)(offs[p + 1] - offs[p]);
        map_pattern(&c, flat + offs[p], la);
        int m;
        int nb = matching_blocks(&c, c.a, la, &m);
        PyObject *lst = PyList_New(nb);
        if (!lst) { Py_CLEAR(out); break; }
        PyList_SET_ITEM(out, q, lst);
        for (int k = 0; k < nb; k++) {
            PyObject *t = Py_BuildValue("(iii)", c.mi[k], c.mj[k], c.mk[k]);
            if (!t) { Py_CLEAR(out); goto free_ctx; }
            PyList_SET_ITEM(lst, k, t);
        }
    }
free_ctx:
    ctx_free(&c);
release:
    for (int k = 0; k < got; k++) PyBuffer_Release(&v[k]);
    return out;
}

/* ---- survivors and ensemble statistics (predictor.kernel_path) ----------------- */

/* A product rounded to double before it is added anywhere: no FMA contraction, whatever the
   compiler flags (Python evaluates a*b and the following +/- as two rounded operations). */
static double mulr(double a, double b) {
    volatile double r = a * b;
    return r;
}

enum { SV_M, SV_E, SV_NB, SV_START, SV_E2, SV_PSTART, SV_PEND, SV_N };

/* survivors(flat i32, offs i64, evlen i32, evoffs i64, sel i64, state i32, out i32[n*7],
             uflag u8[ncodes]) -> None
   Per selected pattern (out row of SV_N ints): M, E, number of blocks, first present event
   (after the "matches[0] in past[-1]" fix-up), first future event, and the flat range
   [pstart, pend) of the present events (relative to the pattern).  uflag[code] is set to 1
   for every token of some present range (the union the ensemble statistics run over). */
static PyObject *py_survivors(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *o[8];
    if (!PyArg_ParseTuple(args, "OOOOOOOO", &o[0], &o[1], &o[2], &o[3], &o[4], &o[5], &o[6],
                          &o[7]))
        return NULL;
    static const Py_ssize_t isz[8] = {4, 8, 4, 8, 8, 4, 4, 1};
    static const char *names[8] = {"flat", "offs", "evlen", "evoffs", "sel", "state", "out",
                                   "uflag"};
    Py_buffer v[8];
    int got = 0;
    PyObject *ret = NULL;
    for (; got < 8; got++)
        if (get_buf(o[got], &v[got], isz[got], got >= 6, names[got]) < 0) goto release;
    const int32_t *flat = v[0].buf;
    const int64_t *offs = v[1].buf;
    const int32_t *evlen = v[2].buf;
    const int64_t *evoffs = v[3].buf;
    const int64_t *sel = v[4].buf;
    const int32_t *state = v[5].buf;
    int32_t *out = v[6].buf;
    uint8_t *uflag = v[7].buf;
    Py_ssize_t npat = v[1].len / 8 - 1, nev_tot = v[2].len / 4, nflat = v[0].len / 4;
    Py_ssize_t n = v[4].len / 8, ncodes = v[7].len;
    int ns = (int)(v[5].len / 4);
    if (npat < 0 || v[3].len / 8 != npat + 1 || v[6].len / 4 < n * SV_N) {
        PyErr_SetString(PyExc_ValueError, "survivors: inconsistent buffer sizes");
        goto release;
    }
    int maxla = 1;
    for (Py_ssize_t q = 0; q < n; q++) {
        int64_t p = sel[q];
        if (p < 0 || p >= npat || offs[p] < 0 || offs[p + 1] < offs[p] || offs[p + 1] > nflat ||
            evoffs[p] < 0 || evoffs[p + 1] < evoffs[p] || evoffs[p + 1] > nev_tot) {
            PyErr_SetString(PyExc_IndexError, "survivors: pattern index or offsets out of range");
            goto release;
        }
        for (int64_t t = offs[p]; t < offs[p + 1]; t++)
            if (flat[t] < 0 || flat[t] >= ncodes) {
                PyErr_SetString(PyExc_IndexError, "survivors: token code out of range");
                goto release;
            }
        int la = (int)(offs[p + 1] - offs[p]);
        if (la > maxla) maxla = la;
    }
    Ctx c;
    if (ctx_init(&c, state, ns, maxla) < 0) {
        PyErr_NoMemory();
        goto release;
    }
    for (Py_ssize_t q = 0; q < n; q++) {
        int64_t p = sel[q];
        const int32_t *pat = flat + offs[p];
        int la = (int)(offs[p + 1] - offs[p]);
        map_pattern(&c, pat, la);
        int m;
        int nb = matching_blocks(&c, c.a, la, &m);
        int i0 = 0, end = la, j0 = 0;
        if (nb > 0) {
            i0 = c.mi[0];
            j0 = c.mj[0];
            end = c.mi[nb - 1] + c.mk[nb - 1];
        }
        const int32_t *ev = evlen + evoffs[p];
        int nev = (int)(evoffs[p + 1] - evoffs[p]);
        int c1 = i0, c2 = 0, e = 0;
        while (c2 < c1 && e < nev) c2 += ev[e++];
        int e1 = e, cpast = c2;
        c1 += end - i0;
        while (c2 < c1 && e < nev) c2 += ev[e++];
        int start = e1, pstart = cpast;
        if (e1 > 0 && m > 0) {
            int sid = c.b[j0];
            int s0 = cpast - ev[e1 - 1];
            for (int t = s0; t < cpast; t++) {
                if (c.a[t] == sid) {
                    start = e1 - 1;
                    pstart = s0;
                    break;
                }
            }
        }
        int32_t *row = out + q * SV_N;
        row[SV_M] = m;
        row[SV_E] = ns - m; /* see py_prepot */
        row[SV_NB] = nb;
        row[SV_START] = start;
        row[SV_E2] = e;
        row[SV_PSTART] = pstart;
        row[SV_PEND] = c2;
        for (int t = pstart; t < c2; t++) uflag[pat[t]] = 1;
    }
    ctx_free(&c);
    ret = Py_None;
    Py_INCREF(ret);
release:
    for (int k = 0; k < got; k++) PyBuffer_Release(&v[k]);
    return ret;
}

enum { EN_CONF, EN_ENT, EN_NENT, EN_GNENT, EN_TFIDF, EN_N };

/* ensemble(flat i32, offs i64, sel i64, info i32[n*7], freq i64[n], spc f64[ncodes],
            colmap i32[ncodes], mat f64[n*g] (zeroed), out f64[n*5], F, U, S, log10_floor)
   For each survivor, over its present tokens ps = flat[pstart:pend] (predictor.ensemble,
   spec 5.5 items 6, 7, 9, 10), in Python's evaluation order:
     mat[i, colmap[s]] = spc[s] * count(s)                                (itfdf matrix row)
     confluence = (freq/F) * (1 - 10 ** (log10 p_0 + log10 p_1 + ...))   (p <= 0 -> floor)
     entropy, normalized_entropy, global_normalized_entropy over distinct tokens in first-
     occurrence order, tfidf_score = sequential sum of tf * (log2(U / k) + 1) / count.
   Every token of ps must have spc[] set (the union the caller built from uflag). */
static PyObject *py_ensemble(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *o[9];
    long long F, U, S;
    double log10_floor;
    if (!PyArg_ParseTuple(args, "OOOOOOOOOLLLd", &o[0], &o[1], &o[2], &o[3], &o[4], &o[5],
                          &o[6], &o[7], &o[8], &F, &U, &S, &log10_floor))
        return NULL;
    static const Py_ssize_t isz[9] = {4, 8, 8, 4, 8, 8, 4, 8, 8};
    static const char *names[9] = {"flat", "offs", "sel", "info", "freq", "spc", "colmap",
                                   "mat", "out"};
    Py_buffer v[9];
    int got = 0;
    PyObject *ret = NULL;
    int *cnt = NULL, *order = NULL;
    for (; got < 9; got++)
        if (get_buf(o[got], &v[got], isz[got], got >= 7, names[got]) < 0) goto release;
    const int32_t *flat = v[0].buf;
    const int64_t *offs = v[1].buf;
    const int64_t *sel = v[2].buf;
    const int32_t *info = v[3].buf;
    const int64_t *freq = v[4].buf;
    const double *spc = v[5].buf;
    const int32_t *colmap = v[6].buf;
    double *mat = v[7].buf;
    double *out = v[8].buf;
    Py_ssize_t npat = v[1].len / 8 - 1, nflat = v[0].len / 4, n = v[2].len / 8;
    Py_ssize_t ncodes = v[5].len / 8;
    Py_ssize_t g = n > 0 ? (v[7].len / 8) / n : 0;
    if (npat < 0 || v[3].len / 4 < n * SV_N || v[4].len / 8 < n || v[6].len / 4 != ncodes ||
        v[7].len / 8 != n * g || v[8].len / 8 < n * EN_N) {
        PyErr_SetString(PyExc_ValueError, "ensemble: inconsistent buffer sizes");
        goto release;
    }
    int maxp = 1;
    for (Py_ssize_t q = 0; q < n; q++) {
        int64_t p = sel[q];
        const int32_t *row = info + q * SV_N;
        if (p < 0 || p >= npat || offs[p] < 0 || offs[p + 1] < offs[p] || offs[p + 1] > nflat ||
            row[SV_PSTART] < 0 || row[SV_PEND] < row[SV_PSTART] ||
            row[SV_PEND] > offs[p + 1] - offs[p]) {
            PyErr_SetString(PyExc_IndexError, "ensemble: pattern index or range out of range");
            goto release;
        }
        for (int t = row[SV_PSTART]; t < row[SV_PEND]; t++) {
            int32_t s = flat[offs[p] + t];
            if (s < 0 || s >= ncodes || colmap[s] < 0 || colmap[s] >= g) {
                PyErr_SetString(PyExc_IndexError, "ensemble: token without a column");
                goto release;
            }
        }
        if (row[SV_PEND] - row[SV_PSTART] > maxp) maxp = row[SV_PEND] - row[SV_PSTART];
    }
    cnt = calloc(ncodes > 0 ? ncodes : 1, sizeof(int));
    order = malloc(sizeof(int) * maxp);
    if (!cnt || !order) {
        PyErr_NoMemory();
        goto release;
    }
    volatile double ten = 10.0; /* a runtime base: pow(10, x) is never rewritten */
    double ln_s = S > 1 ? log((double)S) : 0.0;
    double du = (double)U;
    for (Py_ssize_t q = 0; q < n; q++) {
        const int32_t *row = info + q * SV_N;
        const int32_t *ps = flat + offs[sel[q]] + row[SV_PSTART];
        int plen = row[SV_PEND] - row[SV_PSTART];
        double *res = out + q * EN_N;
        int nd = 0;
        for (int t = 0; t < plen; t++) {
            if (cnt[ps[t]]++ == 0) order[nd++] = ps[t];
        }
        double *mrow = mat + q * g;
        for (int d = 0; d < nd; d++) mrow[colmap[order[d]]] = spc[order[d]] * (double)cnt[order[d]];
        /* confluence */
        if (plen > 0) {
            double acc = 0.0;
            for (int t = 0; t < plen; t++) {
                double pr = spc[ps[t]];
                double l = pr > 0 ? log10(pr) : log10_floor;
                acc = t == 0 ? l : acc + l;
            }
            double peh = F > 0 ? (double)freq[q] / (double)F : 0.0;
            res[EN_CONF] = peh * (1.0 - pow(ten, acc));
        } else {
            res[EN_CONF] = 0.0;
        }
        /* entropy family (no pre-computed metrics) */
        double ent = 0.0, nent = 0.0, gnent = 0.0;
        if (plen > 0) {
            for (int d = 0; d < nd; d++) {
                double pr = (double)cnt[order[d]] / (double)plen;
                ent = ent - mulr(pr, log2(pr));
            }
            if (S > 1) {
                for (int d = 0; d < nd; d++) {
                    double pr = (double)cnt[order[d]] / (double)plen;
                    nent = nent - mulr(pr, log(pr) / ln_s);
                }
                for (int d = 0; d < nd; d++) {
                    double prob = spc[order[d]];
                    if (prob > 0) gnent = gnent - mulr(prob, log(prob) / ln_s);
                }
            }
        }
        res[EN_ENT] = ent;
        res[EN_NENT] = nent;
        res[EN_GNENT] = gnent;
        /* tfidf (no pre-computed tf vector) */
        double tfidf = 0.0;
        if (U > 0 && plen > 0 && nd > 0) {
            double acc = 0.0;
            for (int d = 0; d < nd; d++) {
                double tf = (double)cnt[order[d]] / (double)plen;
                long long k = (long long)(spc[order[d]] * du);
                if (k == 0) k = 1;
                double sc = tf * (log2(du / (double)k) + 1.0);
                acc = d == 0 ? sc : acc + sc;
            }
            tfidf = acc / (double)nd;
        }
        res[EN_TFIDF] = tfidf;
        for (int d = 0; d < nd; d++) cnt[order[d]] = 0;
    }
    ret = Py_None;
    Py_INCREF(ret);
release:
    free(cnt);
    free(order);
    for (int k = 0; k < got; k++) PyBuffer_Release(&v[k]);
    return ret;
}

/* predictor.matching.pre_potential from integer inputs (only used to prune, with a margin). */
static double pre_potential(int m, int e, int nb, int plen, int la) {
    double mf = (double)m, ef = (double)e;
    double ev = la > 0 ? mf / (double)la : 0.0;
    double cf = plen > 0 ? mf / (double)plen : 0.0;
    double den = 2.0 * mf + ef;
    double snr = den > 0 ? (2.0 * mf - ef) / den : 0.0;
    double fc = nb == 0 ? 0.0 : 1.0 / (double)nb;
    return mulr(ev + cf, snr) + fc;
}

/* min-heap of the best `cap` values seen */
static void heap_push(double *h, int *n, int cap, double x) {
    int i;
    if (*n < cap) {
        i = (*n)++;
        while (i > 0 && h[(i - 1) / 2] > x) { h[i] = h[(i - 1) / 2]; i = (i - 1) / 2; }
        h[i] = x;
        return;
    }
    if (x <= h[0]) return;
    i = 0;
    for (;;) {
        int l = 2 * i + 1, r = l + 1, m = i;
        double v = x;
        if (l < cap && h[l] < v) { m = l; v = h[l]; }
        if (r < cap && h[r] < v) { m = r; }
        if (m == i) break;
        h[i] = h[m];
        i = m;
    }
    h[i] = x;
}

/* ---- scan: exact LCS filter + pre-potential inputs over all patterns in one pass ---------- */

static int popcount64(uint64_t x) {
#if defined(__GNUC__) || defined(__clang__)
    return __builtin_popcountll(x);
#else
    int n = 0;
    while (x) { x &= x - 1; n++; }
    return n;
#endif
}

/* scan(flat i32, offs i64, evlen i32, evoffs i64, state i32, cutoff f64, threshold f64,
        limit, out_idx i64, out_sim f64, out_m i32, out_e i32, out_nb i32, out_plen i32)
        -> count
   For every pattern p (in index order): L = LCS(P, state) (bit-parallel, Hyyro 2004; the
   value rapidfuzz's LCSseq.similarity gives), similarity = ((2.0*L)/T)*100.0/100.0 with
   T = |P| + |state| (predictor.candidates.passing's numpy expression), kept iff
   similarity*100.0 >= cutoff and similarity >= threshold (cutoff = threshold*100.0 - 1e-6,
   computed by the caller).  For kept patterns it writes the index, the similarity and what
   prepot() writes; returns the number kept.  Outputs must hold one entry per pattern.

   Pruning (limit > 0), which cannot change predictor.candidates.kernel_select's top ``limit``: the
   root longest match (i0, j0, K) is found first.  If no run reaches into either of its child
   boxes, the blocks are that one match (M = K, one block).  Otherwise there are >= 2 blocks
   and K < M <= L, so with snr(M) = (3M - |S|)/(M + |S|) (E = |S| - M) increasing in M,
   M/|P| <= confidence <= 1 and fragmentation term <= 1/2:
     snr(L) >= 0: _pre_potential <= (L/|P| + 1) * snr(L) + 1/2;
     snr(L) <  0: _pre_potential <= max(f(K+1), f(L)) + 1/2, f(M) = (2M/|P|) * snr(M)
                  (f is convex in M, so its maximum on [K+1, L] is at an end).
   When ``limit`` exact values already beat that bound by a margin the pattern cannot be
   among the top ``limit`` and is left out of the output. */
static PyObject *py_scan(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *o[11];
    double cutoff, thr;
    int limit;
    if (!PyArg_ParseTuple(args, "OOOOOddiOOOOOO", &o[0], &o[1], &o[2], &o[3], &o[4], &cutoff,
                          &thr, &limit, &o[5], &o[6], &o[7], &o[8], &o[9], &o[10]))
        return NULL;
    double *heap = NULL;
    int nheap = 0;
    static const Py_ssize_t isz[11] = {4, 8, 4, 8, 4, 8, 8, 4, 4, 4, 4};
    static const char *names[11] = {"flat", "offs", "evlen", "evoffs", "state", "out_idx",
                                    "out_sim", "out_m", "out_e", "out_nb", "out_plen"};
    Py_buffer v[11];
    int got = 0;
    PyObject *ret = NULL;
    int *tab = NULL;
    uint64_t *masks = NULL, *vw = NULL;
    Ctx c;
    int have_ctx = 0;
    for (; got < 11; got++)
        if (get_buf(o[got], &v[got], isz[got], got >= 5, names[got]) < 0) goto release;
    const int32_t *flat = v[0].buf;
    const int64_t *offs = v[1].buf;
    const int32_t *evlen = v[2].buf;
    const int64_t *evoffs = v[3].buf;
    const int32_t *state = v[4].buf;
    int64_t *oidx = v[5].buf;
    double *osim = v[6].buf;
    int32_t *om = v[7].buf, *oe = v[8].buf, *onb = v[9].buf, *opl = v[10].buf;
    Py_ssize_t npat = v[1].len / 8 - 1, nev_tot = v[2].len / 4, nflat = v[0].len / 4;
    int ns = (int)(v[4].len / 4);
    if (npat < 0 || v[3].len / 8 != npat + 1 || v[5].len / 8 < npat || v[6].len / 8 < npat ||
        v[7].len / 4 < npat || v[8].len / 4 < npat || v[9].len / 4 < npat ||
        v[10].len / 4 < npat) {
        PyErr_SetString(PyExc_ValueError, "scan: inconsistent buffer sizes");
        goto release;
    }
    if (offs[0] != 0 || evoffs[0] != 0 || offs[npat] > nflat || evoffs[npat] > nev_tot) {
        PyErr_SetString(PyExc_IndexError, "scan: offsets out of range");
        goto release;
    }
    int maxla = 1;
    int32_t maxcode = 0;
    for (Py_ssize_t p = 0; p < npat; p++) {
        if (offs[p + 1] < offs[p] || evoffs[p + 1] < evoffs[p]) {
            PyErr_SetString(PyExc_IndexError, "scan: offsets out of range");
            goto release;
        }
        int la = (int)(offs[p + 1] - offs[p]);
        if (la > maxla) maxla = la;
    }
    for (Py_ssize_t t = 0; t < nflat; t++) {
        if (flat[t] < 0) {
            PyErr_SetString(PyExc_ValueError, "scan: negative token code");
            goto release;
        }
        if (flat[t] > maxcode) maxcode = flat[t];
    }
    if (ctx_init(&c, state, ns, maxla) < 0) {
        PyErr_NoMemory();
        goto release;
    }
    have_ctx = 1;
    /* dense token code -> state symbol id (-1: not in the state) */
    tab = malloc(sizeof(int) * ((size_t)maxcode + 1));
    if (limit < 0) limit = 0;
    heap = malloc(sizeof(double) * (size_t)(limit > 0 ? limit : 1));
    int nw = (ns + 63) / 64;
    if (nw < 1) nw = 1;
    masks = calloc((size_t)(c.ds + 1) * nw, sizeof(uint64_t));
    vw = malloc(sizeof(uint64_t) * nw);
    if (!tab || !masks || !vw || !heap) {
        PyErr_NoMemory();
        goto release;
    }
    /* tab[code] = state id + 1 (0: not in the state); masks row 0 stays zero */
    for (int32_t k = 0; k <= maxcode; k++) tab[k] = 0;
    for (int j = 0; j < ns; j++) {
        if (state[j] >= 0 && state[j] <= maxcode) tab[state[j]] = c.b[j] + 1;
        masks[(size_t)(c.b[j] + 1) * nw + j / 64] |= (uint64_t)1 << (j % 64);
    }
    uint64_t lastmask = (ns % 64) ? (((uint64_t)1 << (ns % 64)) - 1) : ~(uint64_t)0;
    Py_ssize_t cnt = 0;
    int *a = c.a, *hits = c.hits;
    for (Py_ssize_t p = 0; p < npat; p++) {
        const int32_t *pat = flat + offs[p];
        int la = (int)(offs[p + 1] - offs[p]);
        int lcs;
        int nh = 0;
        if (nw == 1) { /* branchless: an absent token has mask 0 and leaves V unchanged */
            uint64_t V = ~(uint64_t)0;
            for (int i = 0; i < la; i++) {
                int s1 = tab[pat[i]];
                a[i] = s1 - 1;
                hits[nh] = i;
                nh += s1 != 0;
                uint64_t M = masks[s1];
                V = (V + (V & M)) | (V & ~M);
            }
            lcs = popcount64(~V & lastmask);
        } else {
            for (int w = 0; w < nw; w++) vw[w] = ~(uint64_t)0;
            for (int i = 0; i < la; i++) {
                int s1 = tab[pat[i]];
                a[i] = s1 - 1;
                if (s1 != 0) {
                    hits[nh++] = i;
                    const uint64_t *M = masks + (size_t)s1 * nw;
                    uint64_t carry = 0;
                    for (int w = 0; w < nw; w++) {
                        uint64_t x = vw[w], u = x & M[w];
                        uint64_t sum = x + u;
                        uint64_t c1 = sum < x;
                        uint64_t sum2 = sum + carry;
                        carry = c1 | (sum2 < sum);
                        vw[w] = sum2 | (x & ~M[w]);
                    }
                }
            }
            lcs = 0;
            for (int w = 0; w < nw; w++)
                lcs += popcount64(~vw[w] & (w == nw - 1 ? lastmask : ~(uint64_t)0));
        }
        double sim = ((2.0 * (double)lcs) / (double)(la + ns)) * 100.0 / 100.0;
        if (!(sim * 100.0 >= cutoff && sim >= thr)) continue;
        int m, nb, i0 = 0, end = la, j0 = 0;
        int nr = find_runs(&c, a, la, hits, nh);
        int ri0, rj0, rk;
        longest_run(&c, nr, &ri0, &rj0, &rk);
        if (rk == 0) {
            m = 0;
            nb = 0;
        } else if (!outer_boxes_have_run(&c, nr, ri0, rj0, ri0 + rk, rj0 + rk)) {
            m = rk;
            nb = 1;
            i0 = ri0;
            j0 = rj0;
            end = ri0 + rk;
        } else {
            if (nheap == limit && limit > 0) {
                /* M in [K+1, L]; snr(M) = (3M - ns)/(M + ns) increases with M */
                double snr = (3.0 * lcs - ns) / (double)(lcs + ns);
                double ub;
                if (snr >= 0) { /* evidence <= L/|P|, confidence <= 1 */
                    ub = ((double)lcs / (double)la + 1.0) * snr + 0.5;
                } else { /* (ev + conf) * snr <= (2M/|P|) * snr(M), convex in M: ends */
                    int k1 = rk + 1;
                    double s1 = (3.0 * k1 - ns) / (double)(k1 + ns);
                    double f1 = 2.0 * k1 / (double)la * s1;
                    double f2 = 2.0 * lcs / (double)la * snr;
                    ub = (f1 > f2 ? f1 : f2) + 0.5;
                }
                if (ub + 1e-7 < heap[0]) continue; /* cannot reach the top `limit` */
            }
            nb = blocks_from_runs(&c, la, nr, ri0, rj0, rk, &m);
            i0 = c.mi[0];
            j0 = c.mj[0];
            end = c.mi[nb - 1] + c.mk[nb - 1];
        }
        const int32_t *ev = evlen + evoffs[p];
        int nev = (int)(evoffs[p + 1] - evoffs[p]);
        int c1 = i0, c2 = 0, e = 0;
        while (c2 < c1 && e < nev) c2 += ev[e++];
        int e1 = e, cpast = c2;
        c1 += end - i0;
        while (c2 < c1 && e < nev) c2 += ev[e++];
        int plen = c2 - cpast;
        if (e1 > 0 && m > 0) {
            int sid = c.b[j0];
            for (int t = cpast - ev[e1 - 1]; t < cpast; t++) {
                if (a[t] == sid) {
                    plen += ev[e1 - 1];
                    break;
                }
            }
        }
        if (limit > 0) heap_push(heap, &nheap, limit, pre_potential(m, ns - m, nb, plen, la));
        oidx[cnt] = p;
        osim[cnt] = sim;
        om[cnt] = m;
        oe[cnt] = ns - m; /* see py_prepot */
        onb[cnt] = nb;
        opl[cnt] = plen;
        cnt++;
    }
    ret = PyLong_FromSsize_t(cnt);
release:
    if (have_ctx) ctx_free(&c);
    free(heap);
    free(tab);
    free(masks);
    free(vw);
    for (int k = 0; k < got; k++) PyBuffer_Release(&v[k]);
    return ret;
}

/* ---- future groups (predictor.ensemble.predictive_information) ---------------------------------- */

static void isort32(int32_t *x, int n) {
    for (int p = 1; p < n; p++) {
        int32_t v = x[p];
        int q = p - 1;
        while (q >= 0 && x[q] > v) { x[q + 1] = x[q]; q--; }
        x[q + 1] = v;
    }
}

/* future_groups(flat i32, offs i64, evlen i32, evoffs i64, sel i64, e2 i32, freq i64,
                 sim f64, out_gid i32[n], out_w f64[n], out_count i32[n], out_first i32[n])
   -> number of groups
   Groups the survivors whose future events[e2:] is non-empty by the future with each event
   sorted (what ensemble.future_key hashes): equal multisets per event, event by event.  Groups are
   numbered in order of first member; out_gid = -1 for an empty future.  Per group, in
   member order: W = 0.0 + f*sim + f*sim + ..., the member count and the first member. */
static PyObject *py_future_groups(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *o[12];
    if (!PyArg_ParseTuple(args, "OOOOOOOOOOOO", &o[0], &o[1], &o[2], &o[3], &o[4], &o[5], &o[6],
                          &o[7], &o[8], &o[9], &o[10], &o[11]))
        return NULL;
    static const Py_ssize_t isz[12] = {4, 8, 4, 8, 8, 4, 8, 8, 4, 8, 4, 4};
    static const char *names[12] = {"flat", "offs", "evlen", "evoffs", "sel", "e2", "freq",
                                    "sim", "out_gid", "out_w", "out_count", "out_first"};
    Py_buffer v[12];
    int got = 0;
    PyObject *ret = NULL;
    int32_t *norm = NULL;
    int64_t *noff = NULL;
    uint64_t *hv = NULL;
    int *table = NULL;
    for (; got < 12; got++)
        if (get_buf(o[got], &v[got], isz[got], got >= 8, names[got]) < 0) goto release;
    const int32_t *flat = v[0].buf;
    const int64_t *offs = v[1].buf;
    const int32_t *evlen = v[2].buf;
    const int64_t *evoffs = v[3].buf;
    const int64_t *sel = v[4].buf;
    const int32_t *e2a = v[5].buf;
    const int64_t *freq = v[6].buf;
    const double *sim = v[7].buf;
    int32_t *gid = v[8].buf;
    double *W = v[9].buf;
    int32_t *count = v[10].buf, *first = v[11].buf;
    Py_ssize_t npat = v[1].len / 8 - 1, nev_tot = v[2].len / 4, nflat = v[0].len / 4;
    Py_ssize_t n = v[4].len / 8;
    if (npat < 0 || v[3].len / 8 != npat + 1 || v[5].len / 4 < n || v[6].len / 8 < n ||
        v[7].len / 8 < n || v[8].len / 4 < n || v[9].len / 8 < n || v[10].len / 4 < n ||
        v[11].len / 4 < n) {
        PyErr_SetString(PyExc_ValueError, "future_groups: inconsistent buffer sizes");
        goto release;
    }
    int64_t total = 0;
    for (Py_ssize_t q = 0; q < n; q++) {
        int64_t p = sel[q];
        if (p < 0 || p >= npat || offs[p] < 0 || offs[p + 1] < offs[p] || offs[p + 1] > nflat ||
            evoffs[p] < 0 || evoffs[p + 1] < evoffs[p] || evoffs[p + 1] > nev_tot || e2a[q] < 0 ||
            e2a[q] > evoffs[p + 1] - evoffs[p]) {
            PyErr_SetString(PyExc_IndexError, "future_groups: index out of range");
            goto release;
        }
        int64_t flen = 0;
        for (int64_t e = evoffs[p]; e < evoffs[p + 1]; e++) flen += evlen[e];
        if (flen != offs[p + 1] - offs[p]) {
            PyErr_SetString(PyExc_ValueError, "future_groups: event lengths do not add up");
            goto release;
        }
        total += offs[p + 1] - offs[p] + (evoffs[p + 1] - evoffs[p]);
    }
    /* normalised futures: per event its length, then its codes sorted */
    norm = malloc(sizeof(int32_t) * (size_t)(total > 0 ? total : 1));
    noff = malloc(sizeof(int64_t) * (size_t)(n + 1));
    hv = malloc(sizeof(uint64_t) * (size_t)(n > 0 ? n : 1));
    Py_ssize_t tsize = 8;
    while (tsize < 2 * n + 2) tsize <<= 1;
    table = malloc(sizeof(int) * tsize);
    if (!norm || !noff || !hv || !table) {
        PyErr_NoMemory();
        goto release;
    }
    for (Py_ssize_t t = 0; t < tsize; t++) table[t] = -1;
    int64_t w = 0;
    int ng = 0;
    for (Py_ssize_t q = 0; q < n; q++) {
        int64_t p = sel[q];
        noff[q] = w;
        int64_t e0 = evoffs[p] + e2a[q], e1 = evoffs[p + 1];
        int64_t pos = offs[p];
        for (int64_t e = evoffs[p]; e < e0; e++) pos += evlen[e];
        for (int64_t e = e0; e < e1; e++) {
            int len = evlen[e];
            norm[w++] = len;
            memcpy(norm + w, flat + pos, sizeof(int32_t) * len);
            isort32(norm + w, len);
            w += len;
            pos += len;
        }
        noff[q + 1] = w;
        if (e0 == e1) {
            gid[q] = -1;
            continue;
        }
        uint64_t h = 1469598103934665603ULL;
        for (int64_t t = noff[q]; t < w; t++) {
            h ^= (uint32_t)norm[t];
            h *= 1099511628211ULL;
        }
        hv[q] = h;
        Py_ssize_t slot = (Py_ssize_t)(h & (uint64_t)(tsize - 1));
        int g = -1;
        for (;;) {
            int r = table[slot];
            if (r < 0) break;
            /* r: first member of a group */
            if (hv[r] == h && noff[r + 1] - noff[r] == w - noff[q] &&
                memcmp(norm + noff[r], norm + noff[q], sizeof(int32_t) * (w - noff[q])) == 0) {
                g = gid[r];
                break;
            }
            slot = (slot + 1) & (tsize - 1);
        }
        if (g < 0) {
            table[slot] = (int)q;
            g = ng++;
            W[g] = 0.0;
            count[g] = 0;
            first[g] = (int32_t)q;
        }
        gid[q] = g;
        W[g] = W[g] + mulr((double)freq[q], sim[q]);
        count[g]++;
    }
    ret = PyLong_FromLong(ng);
release:
    free(norm);
    free(noff);
    free(hv);
    free(table);
    for (int k = 0; k < got; k++) PyBuffer_Release(&v[k]);
    return ret;
}

/* ---- output lists for the returned predictions ----------------------------------------------- */

/* Why one setup for two emitters: lists() builds the lists as Python objects and
   predictions_json() writes the same lists as JSON bytes; both walk the same blocks and the
   same event split, so the walk lives once (Lists, lists_open, lists_split) and only the
   writing differs. */

typedef struct {
    Py_buffer v[8];
    int got;
    const int32_t *flat, *evlen, *info, *state, *stm_lens;
    const int64_t *offs, *evoffs, *sel;
    Py_ssize_t n, nstm;
    int ns;
    Ctx c;
    int have_ctx;
    uint8_t *matched; /* per state id: matched by a block of the current pattern */
    uint8_t *inpres;  /* per state id: among the current pattern's present tokens */
} Lists;

typedef struct {
    const int32_t *pat, *ev;
    int nev, start, e2, pos0, pos1, nb;
} Split;

static void lists_close(Lists *L) {
    if (L->have_ctx) ctx_free(&L->c);
    L->have_ctx = 0;
    free(L->matched);
    free(L->inpres);
    L->matched = L->inpres = NULL;
    for (int k = 0; k < L->got; k++) PyBuffer_Release(&L->v[k]);
    L->got = 0;
}

/* Take the 8 buffers (flat, offs, evlen, evoffs, sel, info, state, stm_lens), check them
   against each other and ``nstate_tokens``, build the state side.  0, or -1 with an error
   set (lists_close() then releases what was taken). */
static int lists_open(Lists *L, PyObject **o, Py_ssize_t nstate_tokens, const char *fn) {
    static const Py_ssize_t isz[8] = {4, 8, 4, 8, 8, 4, 4, 4};
    static const char *names[8] = {"flat", "offs", "evlen", "evoffs", "sel", "info", "state",
                                   "stm_lens"};
    memset(L, 0, sizeof(*L));
    for (; L->got < 8; L->got++)
        if (get_buf(o[L->got], &L->v[L->got], isz[L->got], 0, names[L->got]) < 0) return -1;
    L->flat = L->v[0].buf;
    L->offs = L->v[1].buf;
    L->evlen = L->v[2].buf;
    L->evoffs = L->v[3].buf;
    L->sel = L->v[4].buf;
    L->info = L->v[5].buf;
    L->state = L->v[6].buf;
    L->stm_lens = L->v[7].buf;
    Py_ssize_t npat = L->v[1].len / 8 - 1, nev_tot = L->v[2].len / 4, nflat = L->v[0].len / 4;
    L->n = L->v[4].len / 8;
    L->nstm = L->v[7].len / 4;
    L->ns = (int)(L->v[6].len / 4);
    if (npat < 0 || L->v[3].len / 8 != npat + 1 || L->v[5].len / 4 < L->n * SV_N ||
        nstate_tokens != L->ns) {
        PyErr_Format(PyExc_ValueError, "%s: inconsistent buffer sizes", fn);
        return -1;
    }
    Py_ssize_t tot_stm = 0;
    for (Py_ssize_t e = 0; e < L->nstm; e++) {
        if (L->stm_lens[e] < 0) break;
        tot_stm += L->stm_lens[e];
    }
    if (tot_stm != L->ns) {
        PyErr_Format(PyExc_ValueError, "%s: STM event lengths do not add up", fn);
        return -1;
    }
    int maxla = 1;
    for (Py_ssize_t q = 0; q < L->n; q++) {
        int64_t p = L->sel[q];
        const int32_t *row = L->info + q * SV_N;
        if (p < 0 || p >= npat || L->offs[p] < 0 || L->offs[p + 1] < L->offs[p] ||
            L->offs[p + 1] > nflat || L->evoffs[p] < 0 || L->evoffs[p + 1] < L->evoffs[p] ||
            L->evoffs[p + 1] > nev_tot || row[SV_START] < 0 || row[SV_START] > row[SV_E2] ||
            row[SV_E2] > L->evoffs[p + 1] - L->evoffs[p]) {
            PyErr_Format(PyExc_IndexError, "%s: index out of range", fn);
            return -1;
        }
        int la = (int)(L->offs[p + 1] - L->offs[p]);
        if (la > maxla) maxla = la;
    }
    if (ctx_init(&L->c, L->state, L->ns, maxla) < 0) {
        PyErr_NoMemory();
        return -1;
    }
    L->have_ctx = 1;
    L->matched = calloc(L->ns + 1, 1);
    L->inpres = calloc(L->ns + 1, 1);
    if (!L->matched || !L->inpres) {
        PyErr_NoMemory();
        return -1;
    }
    return 0;
}

/* The q-th selected pattern against the state: its blocks (L->c.mi/mj/mk, s->nb of them),
   its event split, and which state ids it matched (L->matched) or has present (L->inpres). */
static void lists_split(Lists *L, Py_ssize_t q, Split *s) {
    int64_t p = L->sel[q];
    const int32_t *row = L->info + q * SV_N;
    Ctx *c = &L->c;
    s->pat = L->flat + L->offs[p];
    s->ev = L->evlen + L->evoffs[p];
    int la = (int)(L->offs[p + 1] - L->offs[p]);
    s->nev = (int)(L->evoffs[p + 1] - L->evoffs[p]);
    s->start = row[SV_START];
    s->e2 = row[SV_E2];
    map_pattern(c, s->pat, la);
    int m;
    s->nb = matching_blocks(c, c->a, la, &m);
    memset(L->matched, 0, L->ns + 1);
    memset(L->inpres, 0, L->ns + 1);
    for (int k = 0; k < s->nb; k++)
        for (int j = c->mj[k]; j < c->mj[k] + c->mk[k]; j++) L->matched[c->b[j]] = 1;
    s->pos0 = 0;
    for (int e = 0; e < s->start; e++) s->pos0 += s->ev[e];
    s->pos1 = s->pos0;
    for (int e = s->start; e < s->e2; e++) s->pos1 += s->ev[e];
    for (int t = s->pos0; t < s->pos1; t++) {
        int sid = c->a[t];
        if (sid >= 0) L->inpres[sid] = 1;
    }
}

static int token_missing(Py_ssize_t ntok, PyObject **titems, int32_t code) {
    if (code < 0 || code >= ntok || titems[code] == Py_None) {
        PyErr_SetString(PyExc_IndexError, "lists: token code without a token");
        return 1;
    }
    return 0;
}

/* [[tokens[code] for code in event] for event in events[e_lo:e_hi]] of one pattern
   (pos = flat position of event e_lo); with ``keep``, only the codes it accepts. */
static PyObject *event_lists(const int32_t *pat, const int32_t *ev, int e_lo, int e_hi,
                             int pos, PyObject *tokens, int (*keep)(void *, int32_t),
                             void *kctx) {
    Py_ssize_t ntok = PyList_GET_SIZE(tokens);
    PyObject **titems = ((PyListObject *)tokens)->ob_item;
    PyObject *out = PyList_New(e_hi - e_lo);
    if (!out) return NULL;
    for (int e = e_lo; e < e_hi; e++) {
        int len = ev[e];
        int nk = 0;
        for (int t = pos; t < pos + len; t++) {
            int32_t code = pat[t];
            if (token_missing(ntok, titems, code)) {
                Py_DECREF(out);
                return NULL;
            }
            if (!keep || keep(kctx, code)) nk++;
        }
        PyObject *lst = PyList_New(nk);
        if (!lst) { Py_DECREF(out); return NULL; }
        PyList_SET_ITEM(out, e - e_lo, lst);
        int w = 0;
        for (int t = pos; t < pos + len; t++) {
            int32_t code = pat[t];
            if (keep && !keep(kctx, code)) continue;
            PyObject *tok = titems[code];
            Py_INCREF(tok);
            PyList_SET_ITEM(lst, w++, tok);
        }
        pos += len;
    }
    return out;
}

typedef struct {
    const Ctx *c;
    const uint8_t *matched; /* per state id */
} KeepCtx;

static int keep_missing(void *p, int32_t code) {
    const KeepCtx *k = p;
    int sid = lookup(k->c, code);
    return !(sid >= 0 && k->matched[sid]);
}

/* lists(flat i32, offs i64, evlen i32, evoffs i64, sel i64, info i32[n*7], state i32,
         stm_lens i32, tokens list, state_tokens list)
   -> [(matches, past, present, missing, extras, sequence, future), ...]
   The event-aligned lists of predictor.matching.build_candidate for each selected pattern, from its
   blocks against the state and the event split in ``info`` (survivors()): matches = state
   tokens of the blocks; missing = tokens of each present event that are not matched;
   extras = tokens of each STM event (lengths stm_lens) not among the present tokens.
   tokens[code] is the token of a pattern code. */
static PyObject *py_lists(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *o[8], *tokens, *stoks;
    if (!PyArg_ParseTuple(args, "OOOOOOOOO!O!", &o[0], &o[1], &o[2], &o[3], &o[4], &o[5], &o[6],
                          &o[7], &PyList_Type, &tokens, &PyList_Type, &stoks))
        return NULL;
    Lists L;
    PyObject *out = NULL;
    if (lists_open(&L, o, PyList_GET_SIZE(stoks), "lists") < 0) goto release;
    out = PyList_New(L.n);
    if (!out) goto release;
    for (Py_ssize_t q = 0; q < L.n; q++) {
        Split s;
        lists_split(&L, q, &s);
        const Ctx *c = &L.c;
        int m = 0;
        for (int k = 0; k < s.nb; k++) m += c->mk[k];
        PyObject *matches = PyList_New(m);
        if (!matches) goto fail;
        int w = 0;
        for (int k = 0; k < s.nb; k++) {
            for (int j = c->mj[k]; j < c->mj[k] + c->mk[k]; j++) {
                PyObject *t = PyList_GET_ITEM(stoks, j);
                Py_INCREF(t);
                PyList_SET_ITEM(matches, w++, t);
            }
        }
        KeepCtx kc = {c, L.matched};
        const int32_t *pat = s.pat, *ev = s.ev;
        PyObject *past = event_lists(pat, ev, 0, s.start, 0, tokens, NULL, NULL);
        PyObject *present =
            past ? event_lists(pat, ev, s.start, s.e2, s.pos0, tokens, NULL, NULL) : NULL;
        PyObject *missing =
            present ? event_lists(pat, ev, s.start, s.e2, s.pos0, tokens, keep_missing, &kc)
                    : NULL;
        PyObject *sequence = missing ? event_lists(pat, ev, 0, s.nev, 0, tokens, NULL, NULL) : NULL;
        PyObject *future =
            sequence ? event_lists(pat, ev, s.e2, s.nev, s.pos1, tokens, NULL, NULL) : NULL;
        PyObject *extras = future ? PyList_New(L.nstm) : NULL;
        if (extras) {
            int j = 0;
            for (Py_ssize_t e = 0; e < L.nstm; e++) {
                int nk = 0;
                for (int t = 0; t < L.stm_lens[e]; t++) nk += !L.inpres[c->b[j + t]];
                PyObject *lst = PyList_New(nk);
                if (!lst) { Py_CLEAR(extras); break; }
                PyList_SET_ITEM(extras, e, lst);
                int w2 = 0;
                for (int t = 0; t < L.stm_lens[e]; t++, j++) {
                    if (L.inpres[c->b[j]]) continue;
                    PyObject *tok = PyList_GET_ITEM(stoks, j);
                    Py_INCREF(tok);
                    PyList_SET_ITEM(lst, w2++, tok);
                }
            }
        }
        PyObject *tup = extras ? PyTuple_Pack(7, matches, past, present, missing, extras,
                                              sequence, future)
                               : NULL;
        Py_XDECREF(matches); Py_XDECREF(past); Py_XDECREF(present); Py_XDECREF(missing);
        Py_XDECREF(extras); Py_XDECREF(sequence); Py_XDECREF(future);
        if (!tup) goto fail;
        PyList_SET_ITEM(out, q, tup);
        continue;
    fail:
        Py_CLEAR(out);
        break;
    }
release:
    lists_close(&L);
    return out;
}

/* ---- predictions as JSON --------------------------------------------------------------------- */

/* Why: at the default 100 predictions an observe's predictions are ~3,500 Python containers
   that exist only to be encoded by orjson and freed.  predictions_json() writes the bytes
   orjson writes for them (codecs.dumps: sorted keys) from the token codes and from one
   orjson-encoded table of the other values, so the stream path allocates a few objects
   instead.  Every value's text comes from orjson (tokens encoded once per token, the table
   once per call): this code only copies spans, so the bytes are orjson's by construction. */

typedef struct {
    char *p;
    size_t n, cap;
} Buf;

static int buf_reserve(Buf *b, size_t extra) {
    if (b->n + extra <= b->cap) return 0;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->n + extra) cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) {
        PyErr_NoMemory();
        return -1;
    }
    b->p = p;
    b->cap = cap;
    return 0;
}

static inline int buf_put(Buf *b, const char *s, size_t k) {
    if (b->n + k > b->cap && buf_reserve(b, k) < 0) return -1;
    memcpy(b->p + b->n, s, k);
    b->n += k;
    return 0;
}

static inline int buf_ch(Buf *b, char ch) {
    if (b->n + 1 > b->cap && buf_reserve(b, 1) < 0) return -1;
    b->p[b->n++] = ch;
    return 0;
}

static inline int buf_bytes(Buf *b, PyObject *o) {
    return buf_put(b, PyBytes_AS_STRING(o), (size_t)PyBytes_GET_SIZE(o));
}

/* Past one JSON value starting at p[i] (orjson's compact output: no whitespace). */
static size_t json_skip(const char *p, size_t len, size_t i) {
    int depth = 0;
    while (i < len) {
        char ch = p[i];
        if (ch == '"') {
            for (i++; i < len && p[i] != '"'; i++)
                if (p[i] == '\\') i++;
            i++;
        } else if (ch == '[' || ch == '{') {
            depth++;
            i++;
        } else if (ch == ']' || ch == '}') {
            if (depth == 0) return i;
            depth--;
            i++;
        } else if (ch == ',' || ch == ':') {
            if (depth == 0) return i;
            i++;
        } else {
            i++;
        }
        if (depth == 0 && (ch == '"' || ch == ']' || ch == '}')) return i;
    }
    return i;
}

/* The table ``[[v, ...n], ...ncol]`` (orjson bytes): the span of every value, column by
   column, into start/size (ncol*n each).  0, or -1 with an error set. */
static int table_spans(const char *p, size_t len, Py_ssize_t ncol, Py_ssize_t n,
                       size_t *start, size_t *size) {
    size_t i = 0;
    if (len < 2 || p[i++] != '[') goto bad;
    for (Py_ssize_t c = 0; c < ncol; c++) {
        if (c && (i >= len || p[i++] != ',')) goto bad;
        if (i >= len || p[i++] != '[') goto bad;
        for (Py_ssize_t q = 0; q < n; q++) {
            if (q && (i >= len || p[i++] != ',')) goto bad;
            size_t j = json_skip(p, len, i);
            if (j <= i || j > len) goto bad;
            start[c * n + q] = i;
            size[c * n + q] = j - i;
            i = j;
        }
        if (i >= len || p[i++] != ']') goto bad;
    }
    if (i >= len || p[i++] != ']' || i != len) goto bad;
    return 0;
bad:
    PyErr_SetString(PyExc_ValueError,
                    "predictions_json: table is not a JSON array of ncol arrays of n values");
    return -1;
}

/* table_spans() into freshly allocated start/size arrays (PyMem_Free both, also on error).
   0, or -1 with an error set. */
static int table_open(const char *table, Py_ssize_t tlen, Py_ssize_t ncol, Py_ssize_t n,
                      size_t **start, size_t **size) {
    size_t cells = (size_t)(ncol * n) + 1;
    *start = PyMem_Malloc(cells * sizeof(size_t));
    *size = PyMem_Malloc(cells * sizeof(size_t));
    if (!*start || !*size) {
        PyErr_NoMemory();
        return -1;
    }
    return table_spans(table, (size_t)tlen, ncol, n, *start, *size);
}

/* [[enc[code] for code in event] for event in events[e_lo:e_hi]], as event_lists(). */
static int json_events(Buf *b, const int32_t *pat, const int32_t *ev, int e_lo, int e_hi,
                       int pos, Py_ssize_t ntok, PyObject **enc, int (*keep)(void *, int32_t),
                       void *kctx) {
    if (buf_ch(b, '[') < 0) return -1;
    for (int e = e_lo; e < e_hi; e++) {
        if (e > e_lo && buf_ch(b, ',') < 0) return -1;
        if (buf_ch(b, '[') < 0) return -1;
        int w = 0;
        for (int t = pos; t < pos + ev[e]; t++) {
            int32_t code = pat[t];
            if (token_missing(ntok, enc, code)) return -1;
            if (keep && !keep(kctx, code)) continue;
            if ((w++ && buf_ch(b, ',') < 0) || buf_bytes(b, enc[code]) < 0) return -1;
        }
        if (buf_ch(b, ']') < 0) return -1;
        pos += ev[e];
    }
    return buf_ch(b, ']');
}

enum { K_MATCHES, K_PAST, K_PRESENT, K_MISSING, K_EXTRAS, K_SEQUENCE, K_FUTURE, K_COLUMN,
       K_CONST, K_N };

typedef struct {
    PyObject *prefix; /* bytes: '{"key":' or ',"key":' */
    int kind;
    Py_ssize_t col;   /* K_COLUMN: column of the table */
    PyObject *arg;    /* K_CONST: bytes */
} Field;

typedef struct {
    const Lists *L; /* NULL for futures_json(): only futures, columns and constants */
    const Split *s;
    Py_ssize_t q, ntok;
    PyObject **tenc, **senc;
    const char *table;
    const size_t *tstart, *tsize;
    Py_ssize_t n; /* rows of the table (one column's length) */
} Row;

/* One field of one object (the text after its prefix).  Futures, columns and constants read
   only r->s's pattern and event split and the table, never r->L. */
static int json_field(Buf *b, const Field *f, const Row *r) {
    const Lists *L = r->L;
    const Split *s = r->s;
    const Ctx *c = L ? &L->c : NULL;
    switch (f->kind) {
    case K_MATCHES: {
        int w = 0;
        if (buf_ch(b, '[') < 0) return -1;
        for (int k = 0; k < s->nb; k++)
            for (int j = c->mj[k]; j < c->mj[k] + c->mk[k]; j++)
                if ((w++ && buf_ch(b, ',') < 0) || buf_bytes(b, r->senc[j]) < 0) return -1;
        return buf_ch(b, ']');
    }
    case K_PAST:
        return json_events(b, s->pat, s->ev, 0, s->start, 0, r->ntok, r->tenc, NULL, NULL);
    case K_PRESENT:
        return json_events(b, s->pat, s->ev, s->start, s->e2, s->pos0, r->ntok, r->tenc, NULL,
                           NULL);
    case K_MISSING: {
        KeepCtx kc = {c, L->matched};
        return json_events(b, s->pat, s->ev, s->start, s->e2, s->pos0, r->ntok, r->tenc,
                           keep_missing, &kc);
    }
    case K_SEQUENCE:
        return json_events(b, s->pat, s->ev, 0, s->nev, 0, r->ntok, r->tenc, NULL, NULL);
    case K_FUTURE:
        return json_events(b, s->pat, s->ev, s->e2, s->nev, s->pos1, r->ntok, r->tenc, NULL,
                           NULL);
    case K_EXTRAS: {
        int j = 0;
        if (buf_ch(b, '[') < 0) return -1;
        for (Py_ssize_t e = 0; e < L->nstm; e++) {
            int w = 0;
            if ((e && buf_ch(b, ',') < 0) || buf_ch(b, '[') < 0) return -1;
            for (int t = 0; t < L->stm_lens[e]; t++, j++) {
                if (L->inpres[c->b[j]]) continue;
                if ((w++ && buf_ch(b, ',') < 0) || buf_bytes(b, r->senc[j]) < 0) return -1;
            }
            if (buf_ch(b, ']') < 0) return -1;
        }
        return buf_ch(b, ']');
    }
    case K_COLUMN: {
        Py_ssize_t at = f->col * r->n + r->q;
        return buf_put(b, r->table + r->tstart[at], r->tsize[at]);
    }
    default: /* K_CONST */
        return buf_bytes(b, f->arg);
    }
}

/* One object: each field's prefix and value in layout order, then "}". */
static int json_object(Buf *b, const Field *fields, Py_ssize_t nf, const Row *r) {
    for (Py_ssize_t k = 0; k < nf; k++)
        if (buf_bytes(b, fields[k].prefix) < 0 || json_field(b, &fields[k], r) < 0) return -1;
    return nf ? buf_ch(b, '}') : 0;
}

/* Check the layout, [(prefix bytes, kind, column index or constant bytes)], against a
   table of ``ncol`` columns.  0, or -1 with an error set. */
static int fields_parse(PyObject *layout, Py_ssize_t ncol, Field *out, Py_ssize_t nf) {
    for (Py_ssize_t k = 0; k < nf; k++) {
        PyObject *t = PyList_GET_ITEM(layout, k);
        Field *f = &out[k];
        if (!PyTuple_Check(t) || PyTuple_GET_SIZE(t) != 3) goto bad;
        f->prefix = PyTuple_GET_ITEM(t, 0);
        f->kind = (int)PyLong_AsLong(PyTuple_GET_ITEM(t, 1));
        f->arg = PyTuple_GET_ITEM(t, 2);
        if (PyErr_Occurred() || !PyBytes_Check(f->prefix) || f->kind < 0 || f->kind >= K_N)
            goto bad;
        if (f->kind == K_COLUMN) {
            f->col = PyLong_AsSsize_t(f->arg);
            if (PyErr_Occurred() || f->col < 0 || f->col >= ncol) goto bad;
        }
        if (f->kind == K_CONST && !PyBytes_Check(f->arg)) goto bad;
    }
    return 0;
bad:
    PyErr_Clear();
    PyErr_SetString(PyExc_ValueError,
                    "predictions_json: layout items are (prefix bytes, kind, column or bytes)");
    return -1;
}

/* The parsed layout (PyMem_Free it), or NULL with an error set. */
static Field *fields_open(PyObject *layout, Py_ssize_t ncol, Py_ssize_t *nf) {
    *nf = PyList_GET_SIZE(layout);
    Field *fields = PyMem_Calloc(*nf ? (size_t)*nf : 1, sizeof(Field));
    if (!fields) {
        PyErr_NoMemory();
        return NULL;
    }
    if (ncol < 0 || fields_parse(layout, ncol, fields, *nf) < 0) {
        PyMem_Free(fields);
        return NULL;
    }
    return fields;
}

static int all_bytes(PyObject *list, int none_ok, const char *what) {
    for (Py_ssize_t j = 0; j < PyList_GET_SIZE(list); j++) {
        PyObject *x = PyList_GET_ITEM(list, j);
        if (!PyBytes_Check(x) && !(none_ok && x == Py_None)) {
            PyErr_Format(PyExc_TypeError, "predictions_json: %s items must be bytes", what);
            return -1;
        }
    }
    return 0;
}

/* predictions_json(flat, offs, evlen, evoffs, sel, info, state, stm_lens, tokens_json,
                    state_json, table, ncol, layout) -> bytes
   The JSON array of one object per selected pattern: for each (prefix, kind, arg) of
   ``layout`` in order, ``prefix`` and then the field's value: a list of lists() (kinds 0-6:
   matches, past, present, missing, extras, sequence, future; tokens written as
   tokens_json[code] / state_json[position], orjson bytes of each token), the pattern's value
   in column ``arg`` of ``table`` (kind 7; ``table`` is orjson's encoding of ``ncol`` lists of
   one value per selected pattern) or the constant ``arg`` (kind 8, bytes); then "}".  The
   caller orders the fields (sorted keys). */
static PyObject *py_predictions_json(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *o[8], *tokens, *stoks, *layout;
    const char *table;
    Py_ssize_t tlen, ncol;
    if (!PyArg_ParseTuple(args, "OOOOOOOOO!O!y#nO!", &o[0], &o[1], &o[2], &o[3], &o[4], &o[5],
                          &o[6], &o[7], &PyList_Type, &tokens, &PyList_Type, &stoks, &table,
                          &tlen, &ncol, &PyList_Type, &layout))
        return NULL;
    Lists L;
    Buf b = {NULL, 0, 0};
    PyObject *out = NULL;
    size_t *tstart = NULL, *tsize = NULL;
    Py_ssize_t nf;
    Field *fields = fields_open(layout, ncol, &nf);
    if (!fields) return NULL;
    if (lists_open(&L, o, PyList_GET_SIZE(stoks), "predictions_json") < 0) goto release;
    if (all_bytes(stoks, 0, "state_json") < 0 || all_bytes(tokens, 1, "tokens_json") < 0)
        goto release;
    if (table_open(table, tlen, ncol, L.n, &tstart, &tsize) < 0) goto release;
    if (buf_reserve(&b, (size_t)tlen + 2048 * (size_t)L.n + 2) < 0) goto release;
    Row r = {&L, NULL, 0, PyList_GET_SIZE(tokens), ((PyListObject *)tokens)->ob_item,
             ((PyListObject *)stoks)->ob_item, table, tstart, tsize, L.n};
    if (buf_ch(&b, '[') < 0) goto release;
    for (Py_ssize_t q = 0; q < L.n; q++) {
        Split s;
        lists_split(&L, q, &s);
        r.s = &s;
        r.q = q;
        if ((q && buf_ch(&b, ',') < 0) || json_object(&b, fields, nf, &r) < 0) goto release;
    }
    if (buf_ch(&b, ']') < 0) goto release;
    out = PyBytes_FromStringAndSize(b.p, (Py_ssize_t)b.n);
release:
    lists_close(&L);
    PyMem_Free(fields);
    PyMem_Free(tstart);
    PyMem_Free(tsize);
    free(b.p);
    return out;
}

/* The 6 buffers of futures() and futures_json() (flat, offs, evlen, evoffs, sel, e2),
   checked against each other.  0, or -1 with an error set (release v[0..*got) either way). */
typedef struct {
    const int32_t *flat, *evlen, *e2;
    const int64_t *offs, *evoffs, *sel;
    Py_ssize_t n;
} Futs;

static int futs_open(PyObject **o, Py_buffer *v, int *got, Futs *F, const char *fn) {
    static const Py_ssize_t isz[6] = {4, 8, 4, 8, 8, 4};
    static const char *names[6] = {"flat", "offs", "evlen", "evoffs", "sel", "e2"};
    for (; *got < 6; (*got)++)
        if (get_buf(o[*got], &v[*got], isz[*got], 0, names[*got]) < 0) return -1;
    F->flat = v[0].buf;
    F->offs = v[1].buf;
    F->evlen = v[2].buf;
    F->evoffs = v[3].buf;
    F->sel = v[4].buf;
    F->e2 = v[5].buf;
    Py_ssize_t npat = v[1].len / 8 - 1, nev_tot = v[2].len / 4, nflat = v[0].len / 4;
    F->n = v[4].len / 8;
    if (npat < 0 || v[3].len / 8 != npat + 1 || v[5].len / 4 < F->n) {
        PyErr_Format(PyExc_ValueError, "%s: inconsistent buffer sizes", fn);
        return -1;
    }
    for (Py_ssize_t q = 0; q < F->n; q++) {
        int64_t p = F->sel[q];
        if (p < 0 || p >= npat || F->offs[p] < 0 || F->offs[p + 1] < F->offs[p] ||
            F->offs[p + 1] > nflat || F->evoffs[p] < 0 || F->evoffs[p + 1] < F->evoffs[p] ||
            F->evoffs[p + 1] > nev_tot || F->e2[q] < 0 ||
            F->e2[q] > F->evoffs[p + 1] - F->evoffs[p]) {
            PyErr_Format(PyExc_IndexError, "%s: index out of range", fn);
            return -1;
        }
    }
    return 0;
}

/* The q-th pattern's events, their count and the flat position of event e2[q]. */
static const int32_t *futs_row(const Futs *F, Py_ssize_t q, int *nev, int *pos) {
    int64_t p = F->sel[q];
    const int32_t *ev = F->evlen + F->evoffs[p];
    *nev = (int)(F->evoffs[p + 1] - F->evoffs[p]);
    *pos = 0;
    for (int e = 0; e < F->e2[q]; e++) *pos += ev[e];
    return ev;
}

/* futures(flat i32, offs i64, evlen i32, evoffs i64, sel i64, e2 i32, tokens list)
   -> [[tokens of event] for event in events[e2:]] per selected pattern */
static PyObject *py_futures(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *o[6], *tokens;
    if (!PyArg_ParseTuple(args, "OOOOOOO!", &o[0], &o[1], &o[2], &o[3], &o[4], &o[5],
                          &PyList_Type, &tokens))
        return NULL;
    Py_buffer v[6];
    int got = 0;
    Futs F;
    PyObject *out = NULL;
    if (futs_open(o, v, &got, &F, "futures") < 0) goto release;
    out = PyList_New(F.n);
    if (!out) goto release;
    for (Py_ssize_t q = 0; q < F.n; q++) {
        int nev, pos;
        const int32_t *ev = futs_row(&F, q, &nev, &pos);
        int64_t p = F.sel[q];
        PyObject *f = event_lists(F.flat + F.offs[p], ev, F.e2[q], nev, pos, tokens, NULL, NULL);
        if (!f) { Py_CLEAR(out); break; }
        PyList_SET_ITEM(out, q, f);
    }
release:
    for (int k = 0; k < got; k++) PyBuffer_Release(&v[k]);
    return out;
}

/* futures_json(flat, offs, evlen, evoffs, sel, e2, tokens_json, table, ncol, layout) -> bytes
   The JSON array of one object per selected pattern, as predictions_json() writes them, from
   a layout of futures (kind 6: the pattern's events[e2:], tokens as tokens_json[code]), table
   values (kind 7) and constants (kind 8): future_potentials without building its dicts and
   lists only to encode them. */
static PyObject *py_futures_json(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *o[6], *tokens, *layout;
    const char *table;
    Py_ssize_t tlen, ncol;
    if (!PyArg_ParseTuple(args, "OOOOOOO!y#nO!", &o[0], &o[1], &o[2], &o[3], &o[4], &o[5],
                          &PyList_Type, &tokens, &table, &tlen, &ncol, &PyList_Type, &layout))
        return NULL;
    Py_buffer v[6];
    int got = 0;
    Futs F;
    Buf b = {NULL, 0, 0};
    PyObject *out = NULL;
    size_t *tstart = NULL, *tsize = NULL;
    Py_ssize_t nf;
    Field *fields = fields_open(layout, ncol, &nf);
    if (!fields) return NULL;
    if (futs_open(o, v, &got, &F, "futures_json") < 0) goto release;
    for (Py_ssize_t k = 0; k < nf; k++)
        if (fields[k].kind != K_FUTURE && fields[k].kind != K_COLUMN &&
            fields[k].kind != K_CONST) {
            PyErr_SetString(PyExc_ValueError,
                            "futures_json: layout kinds are future, column or constant");
            goto release;
        }
    if (all_bytes(tokens, 1, "tokens_json") < 0) goto release;
    if (table_open(table, tlen, ncol, F.n, &tstart, &tsize) < 0) goto release;
    if (buf_reserve(&b, (size_t)tlen + 256 * (size_t)F.n + 2) < 0) goto release;
    Row r = {NULL, NULL, 0, PyList_GET_SIZE(tokens), ((PyListObject *)tokens)->ob_item, NULL,
             table, tstart, tsize, F.n};
    if (buf_ch(&b, '[') < 0) goto release;
    for (Py_ssize_t q = 0; q < F.n; q++) {
        Split s = {0};
        s.ev = futs_row(&F, q, &s.nev, &s.pos1);
        s.pat = F.flat + F.offs[F.sel[q]];
        s.e2 = F.e2[q];
        r.s = &s;
        r.q = q;
        if ((q && buf_ch(&b, ',') < 0) || json_object(&b, fields, nf, &r) < 0) goto release;
    }
    if (buf_ch(&b, ']') < 0) goto release;
    out = PyBytes_FromStringAndSize(b.p, (Py_ssize_t)b.n);
release:
    for (int k = 0; k < got; k++) PyBuffer_Release(&v[k]);
    PyMem_Free(fields);
    PyMem_Free(tstart);
    PyMem_Free(tsize);
    free(b.p);
    return out;
}

static PyMethodDef methods[] = {
    {"blocks", py_blocks, METH_VARARGS,
     "blocks(a, b): difflib matching blocks (no junk, no autojunk) of two int32 buffers."},
    {"prepot", py_prepot, METH_VARARGS,
     "prepot(flat, offs, evlen, evoffs, sel, state, out_m, out_e, out_nb, out_plen)."},
    {"blocks_batch", py_blocks_batch, METH_VARARGS,
     "blocks_batch(flat, offs, sel, state): merged blocks (no sentinel) per selected pattern."},
    {"scan", py_scan, METH_VARARGS,
     "scan(flat, offs, evlen, evoffs, state, cutoff, threshold, out_idx, out_sim, out_m, "
     "out_e, out_nb, out_plen) -> number of patterns kept."},
    {"future_groups", py_future_groups, METH_VARARGS,
     "future_groups(flat, offs, evlen, evoffs, sel, e2, freq, sim, out_gid, out_w, out_count, "
     "out_first) -> number of groups."},
    {"lists", py_lists, METH_VARARGS,
     "lists(flat, offs, evlen, evoffs, sel, info, state, stm_lens, tokens, state_tokens)."},
    {"predictions_json", py_predictions_json, METH_VARARGS,
     "predictions_json(flat, offs, evlen, evoffs, sel, info, state, stm_lens, tokens_json, "
     "state_json, table, ncol, layout) -> bytes: the predictions' JSON array."},
    {"futures", py_futures, METH_VARARGS,
     "futures(flat, offs, evlen, evoffs, sel, e2, tokens): future event lists."},
    {"futures_json", py_futures_json, METH_VARARGS,
     "futures_json(flat, offs, evlen, evoffs, sel, e2, tokens_json, table, ncol, layout) -> "
     "bytes: one JSON object per selected pattern (futures, table values, constants)."},
    {"survivors", py_survivors, METH_VARARGS,
     "survivors(flat, offs, evlen, evoffs, sel, state, out, uflag): blocks and event ranges."},
    {"ensemble", py_ensemble, METH_VARARGS,
     "ensemble(flat, offs, sel, info, freq, spc, colmap, mat, out, F, U, S, log10_floor)."},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef moddef = {PyModuleDef_HEAD_INIT, "_kernel",
                                    "difflib-compatible block kernel for KATO's predictor.", -1,
                                    methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__kernel(void) { return PyModule_Create(&moddef); }
