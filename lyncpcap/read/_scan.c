/* The pcapng reader's hot loop in C: runs of whole Enhanced Packet Blocks.
 *
 * `Capture._pcapng_records` (capture.py) calls `epb_run` where its own fast path would start.
 * It walks consecutive whole EPBs of known interfaces, judges each packet exactly as the Python
 * prefilter does (same fields, same rules), counts and drops what the flows layer would drop, and
 * hands every other packet to `feed(frame, ts, linktype, data, wirelen)`.  It stops, returning
 * its state, in front of anything else: another block type, a block not whole in the buffer, a
 * damaged one, or the packet at which the prefilter's tick is due (Python handles those).
 * The results are those of the Python loop, which stays the reference (tests compare both).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define BT_EPB 6u
#define MAX_PACKET 262144u
#define MAX_BLOCK (MAX_PACKET + (1u << 20))
#define HOT_LEN (28 + 48)
#define MIN_JUDGED 54
#define EXACT_LIMIT (1ULL << 53)

static inline uint32_t rd32(const unsigned char *p, int big) {
    if (big)
        return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
    return ((uint32_t)p[3] << 24) | ((uint32_t)p[2] << 16) | ((uint32_t)p[1] << 8) | p[0];
}

static inline unsigned be16(const unsigned char *p) { return ((unsigned)p[0] << 8) | p[1]; }

typedef struct {
    long linktype;
    unsigned long long divisor;
    long long tsoffset;
    PyObject *divisor_obj; /* borrowed */
    PyObject *tsoffset_obj; /* borrowed */
} iface_t;

/* seconds as Python computes them: ((high << 32) | low) / divisor + tsoffset */
static PyObject *timestamp(uint32_t high, uint32_t low, const iface_t *ifc) {
    unsigned long long raw = ((unsigned long long)high << 32) | low;
    if (raw < EXACT_LIMIT && ifc->divisor < EXACT_LIMIT && ifc->tsoffset > -(long long)EXACT_LIMIT &&
        ifc->tsoffset < (long long)EXACT_LIMIT) {
        /* exact doubles: one correctly rounded division, then the sum, as in Python */
        double t = (double)raw / (double)ifc->divisor;
        return PyFloat_FromDouble(t + (double)ifc->tsoffset);
    }
    PyObject *r = PyLong_FromUnsignedLongLong(raw);
    if (r == NULL)
        return NULL;
    PyObject *q = PyNumber_TrueDivide(r, ifc->divisor_obj);
    Py_DECREF(r);
    if (q == NULL)
        return NULL;
    PyObject *s = PyNumber_Add(q, ifc->tsoffset_obj);
    Py_DECREF(q);
    return s;
}

/* epb_run(buf, off, end, big_endian, interfaces, frame, packets, judge, mask, table, floor,
 *         udp_ports, feed, n_udp, n_tcp, n_bytes)
 * -> (off, frame, packets, n_udp, n_tcp, n_bytes, last)
 * last: None if no packet was handled, else (ts_high, ts_low, interface index, dropped) of the
 * last one (the reader keeps the time of the packet before a Simple Packet Block). */
static PyObject *epb_run(PyObject *self, PyObject *args) {
    PyObject *bufobj, *interfaces, *table, *floor_obj, *udp_ports, *feed;
    Py_ssize_t off, end;
    int big, judge;
    long long frame, packets, mask, n_udp, n_tcp, n_bytes;
    if (!PyArg_ParseTuple(args, "OnnpO!LLpLOOOOLLL", &bufobj, &off, &end, &big, &PyList_Type, &interfaces, &frame,
                          &packets, &judge, &mask, &table, &floor_obj, &udp_ports, &feed, &n_udp, &n_tcp, &n_bytes))
        return NULL;

    Py_buffer view;
    if (PyObject_GetBuffer(bufobj, &view, PyBUF_SIMPLE) < 0)
        return NULL;
    if (end > view.len)
        end = view.len;
    const unsigned char *buf = (const unsigned char *)view.buf;

    Py_ssize_t n_if = PyList_GET_SIZE(interfaces);
    iface_t *ifs = NULL;
    unsigned char *ports = NULL; /* a bitmap of the UDP ports handed over; NULL: all UDP is */
    long long floor = 0;
    int have_floor = 0;
    PyObject *result = NULL;
    long long last_high = -1, last_low = 0, last_if = 0;
    int last_dropped = 0;

    if (n_if > 0) {
        ifs = PyMem_Calloc((size_t)n_if, sizeof(iface_t));
        if (ifs == NULL) {
            PyErr_NoMemory();
            goto done;
        }
    }
    for (Py_ssize_t i = 0; i < n_if; i++) {
        PyObject *t = PyList_GET_ITEM(interfaces, i);
        if (!PyTuple_Check(t) || PyTuple_GET_SIZE(t) < 3) {
            PyErr_SetString(PyExc_TypeError, "interfaces: (linktype, divisor, tsoffset, snaplen) tuples");
            goto done;
        }
        ifs[i].linktype = PyLong_AsLong(PyTuple_GET_ITEM(t, 0));
        ifs[i].divisor_obj = PyTuple_GET_ITEM(t, 1);
        ifs[i].tsoffset_obj = PyTuple_GET_ITEM(t, 2);
        ifs[i].divisor = PyLong_AsUnsignedLongLong(ifs[i].divisor_obj);
        if (PyErr_Occurred()) {
            PyErr_Clear();
            ifs[i].divisor = EXACT_LIMIT; /* huge: the exact Python path */
        }
        ifs[i].tsoffset = PyLong_AsLongLong(ifs[i].tsoffset_obj);
        if (PyErr_Occurred()) {
            PyErr_Clear();
            ifs[i].tsoffset = (long long)EXACT_LIMIT;
        }
        if (ifs[i].linktype == -1 && PyErr_Occurred())
            goto done;
    }
    if (judge) {
        if (udp_ports != Py_None) {
            ports = PyMem_Calloc(8192, 1);
            if (ports == NULL) {
                PyErr_NoMemory();
                goto done;
            }
            PyObject *it = PyObject_GetIter(udp_ports);
            if (it == NULL)
                goto done;
            PyObject *item;
            while ((item = PyIter_Next(it)) != NULL) {
                long p = PyLong_AsLong(item);
                Py_DECREF(item);
                if (p >= 0 && p < 65536)
                    ports[p >> 3] |= (unsigned char)(1u << (p & 7));
            }
            Py_DECREF(it);
            if (PyErr_Occurred())
                goto done;
        }
        floor = PyLong_AsLongLong(floor_obj);
        if (PyErr_Occurred()) {
            PyErr_Clear(); /* beyond 64 bits: no entry is judged fresh here; Python's loop is */
        } else {
            have_floor = 1;
        }
        if (!PyDict_Check(table)) {
            PyErr_SetString(PyExc_TypeError, "table must be a dict");
            goto done;
        }
    }

    while (end - off >= HOT_LEN) {
        const unsigned char *b = buf + off;
        uint32_t btype = rd32(b, big), blen = rd32(b + 4, big);
        if (btype != BT_EPB || blen < 32 || blen > MAX_BLOCK || (blen & 3) || (Py_ssize_t)blen > end - off)
            break;
        uint32_t ifid = rd32(b + 8, big), ts_high = rd32(b + 12, big), ts_low = rd32(b + 16, big);
        uint32_t caplen = rd32(b + 20, big), wirelen = rd32(b + 24, big);
        if (caplen > blen - 32 || (Py_ssize_t)ifid >= n_if || rd32(b + blen - 4, big) != blen)
            break;
        if (judge && !((packets + 1) & mask))
            break; /* the prefilter's tick is due at this packet: Python's loop calls it */
        const iface_t *ifc = &ifs[ifid];
        const unsigned char *d = b + 28;
        frame++;
        packets++;
        if (judge && ifc->linktype == 1 && caplen >= MIN_JUDGED && be16(d + 12) == 0x0800 && d[14] == 0x45 &&
            !(be16(d + 20) & 0x3FFF)) {
            unsigned proto = d[23];
            if (proto == 17) {
                if (ports != NULL) {
                    unsigned sport = be16(d + 34), dport = be16(d + 36);
                    if (!(ports[sport >> 3] & (1u << (sport & 7))) && !(ports[dport >> 3] & (1u << (dport & 7)))) {
                        n_udp++;
                        n_bytes += wirelen;
                        last_high = ts_high, last_low = ts_low, last_if = ifid, last_dropped = 1;
                        off += blen;
                        continue;
                    }
                }
            } else if (proto == 6 && !(d[47] & 0x07) && have_floor) {
                PyObject *key = PyBytes_FromStringAndSize((const char *)d + 26, 12);
                if (key == NULL)
                    goto done;
                PyObject *entry = PyDict_GetItemWithError(table, key); /* borrowed */
                Py_DECREF(key);
                if (entry == NULL && PyErr_Occurred())
                    goto done;
                if (entry != NULL && PyLong_CheckExact(entry)) {
                    int overflow = 0;
                    long long v = PyLong_AsLongLongAndOverflow(entry, &overflow);
                    if ((overflow > 0) || (!overflow && v >= floor)) {
                        n_tcp++;
                        n_bytes += wirelen;
                        last_high = ts_high, last_low = ts_low, last_if = ifid, last_dropped = 1;
                        off += blen;
                        continue;
                    }
                }
            }
        }
        last_high = ts_high, last_low = ts_low, last_if = ifid, last_dropped = 0;
        PyObject *ts = timestamp(ts_high, ts_low, ifc);
        if (ts == NULL)
            goto done;
        PyObject *data = PyBytes_FromStringAndSize((const char *)d, caplen);
        if (data == NULL) {
            Py_DECREF(ts);
            goto done;
        }
        off += blen;
        PyObject *rec = Py_BuildValue("(LNlNk)", frame, ts, ifc->linktype, data, (unsigned long)wirelen);
        if (rec == NULL)
            goto done;
        PyObject *r = PyObject_Call(feed, rec, NULL);
        Py_DECREF(rec);
        if (r == NULL)
            goto done;
        Py_DECREF(r);
    }
    if (last_high >= 0)
        result = Py_BuildValue("(nLLLLL(LLLN))", off, frame, packets, n_udp, n_tcp, n_bytes, last_high, last_low, last_if,
                               PyBool_FromLong(last_dropped));
    else
        result = Py_BuildValue("(nLLLLLO)", off, frame, packets, n_udp, n_tcp, n_bytes, Py_None);
done:
    PyMem_Free(ifs);
    PyMem_Free(ports);
    PyBuffer_Release(&view);
    return result;
}

static PyMethodDef methods[] = {
    {"epb_run", epb_run, METH_VARARGS, "Walk whole enhanced packet blocks (see capture.py)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_scan", "The pcapng reader's hot loop in C.", -1, methods};

PyMODINIT_FUNC PyInit__scan(void) { return PyModule_Create(&module); }
