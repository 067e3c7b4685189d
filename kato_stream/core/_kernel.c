/*
 * kato_stream.core._kernel: difflib-compatible matching blocks and KATO's _pre_potential
 * inputs for many int-coded patterns against one int-coded state, in one call.
 *
 * Exactly replicates kato_stream/core/matcher.py (difflib.SequenceMatcher with no junk and
 * no autojunk): greedy longest match (ties: smallest i, then smallest j), recursion on the
 * left and right remainders, sort, merge of adjacent blocks.  Per candidate it returns what
 * predictions._pre_potential needs (spec 5.3 C, 5.4):
 *   M     = len(matches)   (sum of block sizes of blocks(P, state))
 *   E     = len(extras_flat) = len(state) - matched size of blocks(present_flat, state)
 *           (= len(state) - M, see py_prepot)
 *   NB    = number of merged blocks (sentinel excluded)
 *   PLEN  = total symbols of the present events (after the "matches[0] in past[-1]" fix-up)
 * The float arithmetic is left to the caller (numpy), so no compiler flag can change it.
 *
 * Only the CPython C API is used.  Buffers are plain C-contiguous memory (numpy arrays);
 * the Python wrapper (kernel.py) guarantees dtypes: int32 tokens, int64 offsets.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

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
    int *prev, *cur;  /* ns+1 each, j2len[j] stored at index j+1, kept zeroed */
    int *tprev, *tcur;
    int *stack;       /* 4 ints per entry */
    int *fi, *fj, *fk; /* found blocks */
    int *a;           /* pattern as state ids (-1: not in state) */
    int cap_a;
    int *mi, *mj, *mk; /* merged blocks */
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
    free(c->prev); free(c->cur); free(c->tprev); free(c->tcur); free(c->stack);
    free(c->fi); free(c->fj); free(c->fk); free(c->a); free(c->mi); free(c->mj); free(c->mk);
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
    c->prev = calloc(ns + 2, sizeof(int));
    c->cur = calloc(ns + 2, sizeof(int));
    c->tprev = malloc(sizeof(int) * (ns + 1));
    c->tcur = malloc(sizeof(int) * (ns + 1));
    c->stack = malloc(sizeof(int) * 4 * (2 * nmin + 4));
    c->fi = malloc(sizeof(int) * nmin);
    c->fj = malloc(sizeof(int) * nmin);
    c->fk = malloc(sizeof(int) * nmin);
    c->mi = malloc(sizeof(int) * nmin);
    c->mj = malloc(sizeof(int) * nmin);
    c->mk = malloc(sizeof(int) * nmin);
    c->a = malloc(sizeof(int) * cap_a);
    if (!c->b || !c->pstart || !c->plist || !c->hkeys || !c->hvals || !c->prev || !c->cur ||
        !c->tprev || !c->tcur || !c->stack || !c->fi || !c->fj || !c->fk || !c->mi ||
        !c->mj || !c->mk || !c->a) {
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
    return 0;
}

/* difflib find_longest_match(alo, ahi, blo, bhi) with an empty junk set. */
static void longest_match(Ctx *c, const int *a, int alo, int ahi, int blo, int bhi,
                          int *oi, int *oj, int *ok) {
    int besti = alo, bestj = blo, bests = 0;
    int *prev = c->prev, *cur = c->cur, *tp = c->tprev, *tc = c->tcur;
    int np = 0;
    const int *b = c->b;
    for (int i = alo; i < ahi; i++) {
        int nc = 0;
        int s = a[i];
        if (s >= 0) {
            int qe = c->pstart[s + 1];
            for (int q = c->pstart[s]; q < qe; q++) {
                int j = c->plist[q];
                if (j < blo) continue;
                if (j >= bhi) break;
                int k = prev[j] + 1; /* j2len[j-1] of the previous row */
                cur[j + 1] = k;
                tc[nc++] = j + 1;
                if (k > bests) {
                    besti = i - k + 1;
                    bestj = j - k + 1;
                    bests = k;
                }
            }
        }
        for (int t = 0; t < np; t++) prev[tp[t]] = 0;
        int *x = prev; prev = cur; cur = x;
        x = tp; tp = tc; tc = x;
        np = nc;
    }
    for (int t = 0; t < np; t++) prev[tp[t]] = 0;
    while (besti > alo && bestj > blo && a[besti - 1] == b[bestj - 1]) {
        besti--; bestj--; bests++;
    }
    while (besti + bests < ahi && bestj + bests < bhi && a[besti + bests] == b[bestj + bests])
        bests++;
    *oi = besti; *oj = bestj; *ok = bests;
}

/* get_matching_blocks() of a[0:la] vs the state, merged, sentinel excluded.
   Blocks go to c->mi/mj/mk; returns their count; *total = sum of sizes. */
static int matching_blocks(Ctx *c, const int *a, int la, int *total) {
    int lb = c->ns;
    int *st = c->stack;
    int sp = 0, nf = 0;
    st[0] = 0; st[1] = la; st[2] = 0; st[3] = lb; sp = 1;
    while (sp > 0) {
        sp--;
        int alo = st[4 * sp], ahi = st[4 * sp + 1], blo = st[4 * sp + 2], bhi = st[4 * sp + 3];
        int i, j, k;
        longest_match(c, a, alo, ahi, blo, bhi, &i, &j, &k);
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
        /* event mapping with flat counts (predictions._build_candidate) */
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

static PyMethodDef methods[] = {
    {"blocks", py_blocks, METH_VARARGS,
     "blocks(a, b): difflib matching blocks (no junk, no autojunk) of two int32 buffers."},
    {"prepot", py_prepot, METH_VARARGS,
     "prepot(flat, offs, evlen, evoffs, sel, state, out_m, out_e, out_nb, out_plen)."},
    {"blocks_batch", py_blocks_batch, METH_VARARGS,
     "blocks_batch(flat, offs, sel, state): merged blocks (no sentinel) per selected pattern."},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef moddef = {PyModuleDef_HEAD_INIT, "_kernel",
                                    "difflib-compatible block kernel for KATO's predictor.", -1,
                                    methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__kernel(void) { return PyModule_Create(&moddef); }
