/* The capture readers' hot loops in C: runs of whole pcapng Enhanced Packet Blocks and of whole
 * pcap records.
 *
 * `Capture._pcapng_records` (capture.py) calls `epb_run` where its own fast path would start,
 * `Capture._pcap_records` calls `pcap_run` likewise.
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

enum { KEEP = 0, DROP_UDP = 1, DROP_TCP = 2 };

/* The prefilter's verdict on an Ethernet frame (capture.py, Prefilter): untagged IPv4 without
 * options, not a fragment; UDP when neither port is in `ports` (NULL: no UDP is dropped); TCP
 * without SYN, FIN or RST whose 12-byte address and port key maps in `table` to an int of at
 * least `floor`.  -1 with an exception set on error. */
static int judge_packet(const unsigned char *d, uint32_t caplen, const unsigned char *ports, PyObject *table,
                        long long floor, int have_floor) {
    if (caplen < MIN_JUDGED || be16(d + 12) != 0x0800 || d[14] != 0x45 || (be16(d + 20) & 0x3FFF))
        return KEEP;
    unsigned proto = d[23];
    if (proto == 17) {
        if (ports == NULL)
            return KEEP;
        unsigned sport = be16(d + 34), dport = be16(d + 36);
        if ((ports[sport >> 3] & (1u << (sport & 7))) || (ports[dport >> 3] & (1u << (dport & 7))))
            return KEEP;
        return DROP_UDP;
    }
    if (proto != 6 || (d[47] & 0x07) || !have_floor)
        return KEEP;
    PyObject *key = PyBytes_FromStringAndSize((const char *)d + 26, 12);
    if (key == NULL)
        return -1;
    PyObject *entry = PyDict_GetItemWithError(table, key); /* borrowed */
    Py_DECREF(key);
    if (entry == NULL)
        return PyErr_Occurred() ? -1 : KEEP;
    if (!PyLong_CheckExact(entry))
        return KEEP;
    int overflow = 0;
    long long v = PyLong_AsLongLongAndOverflow(entry, &overflow);
    if (overflow > 0 || (!overflow && v >= floor))
        return DROP_TCP;
    return KEEP;
}

/* Count a frame the prefilter drops: 1 if `d` is dropped, 0 if it is to be handed over, -1 on error. */
static int dropped(const unsigned char *d, uint32_t caplen, uint32_t wirelen, const unsigned char *ports,
                   PyObject *table, long long floor, int have_floor, long long *n_udp, long long *n_tcp,
                   long long *n_bytes) {
    int verdict = judge_packet(d, caplen, ports, table, floor, have_floor);
    if (verdict <= 0)
        return verdict;
    if (verdict == DROP_UDP)
        ++*n_udp;
    else
        ++*n_tcp;
    *n_bytes += wirelen;
    return 1;
}

/* feed(frame, ts, linktype, data, wirelen); `ts` is a new reference, consumed.  -1 on error. */
static int hand_over(PyObject *feed, long long frame, PyObject *ts, long linktype, const unsigned char *d,
                     uint32_t caplen, uint32_t wirelen) {
    if (ts == NULL)
        return -1;
    PyObject *data = PyBytes_FromStringAndSize((const char *)d, caplen);
    if (data == NULL) {
        Py_DECREF(ts);
        return -1;
    }
    PyObject *rec = Py_BuildValue("(LNlNk)", frame, ts, linktype, data, (unsigned long)wirelen);
    if (rec == NULL)
        return -1;
    PyObject *r = PyObject_Call(feed, rec, NULL);
    Py_DECREF(rec);
    if (r == NULL)
        return -1;
    Py_DECREF(r);
    return 0;
}

/* The prefilter's state from Python: a bitmap of the UDP ports handed over (*ports NULL: every
 * UDP datagram is), the TCP floor (*have_floor 0: beyond 64 bits, judged by Python instead). */
static int prefilter_state(PyObject *udp_ports, PyObject *floor_obj, PyObject *table, unsigned char **ports,
                           long long *floor, int *have_floor) {
    *ports = NULL;
    *have_floor = 0;
    if (udp_ports != Py_None) {
        *ports = PyMem_Calloc(8192, 1);
        if (*ports == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        PyObject *it = PyObject_GetIter(udp_ports);
        if (it == NULL)
            return -1;
        PyObject *item;
        while ((item = PyIter_Next(it)) != NULL) {
            long p = PyLong_AsLong(item);
            Py_DECREF(item);
            if (p >= 0 && p < 65536)
                (*ports)[p >> 3] |= (unsigned char)(1u << (p & 7));
        }
        Py_DECREF(it);
        if (PyErr_Occurred())
            return -1;
    }
    *floor = PyLong_AsLongLong(floor_obj);
    if (PyErr_Occurred())
        PyErr_Clear();
    else
        *have_floor = 1;
    if (!PyDict_Check(table)) {
        PyErr_SetString(PyExc_TypeError, "table must be a dict");
        return -1;
    }
    return 0;
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
    if (judge && prefilter_state(udp_ports, floor_obj, table, &ports, &floor, &have_floor) < 0)
        goto done;

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
        if (judge && ifc->linktype == 1) {
            int r = dropped(d, caplen, wirelen, ports, table, floor, have_floor, &n_udp, &n_tcp, &n_bytes);
            if (r < 0)
                goto done;
            if (r) {
                last_high = ts_high, last_low = ts_low, last_if = ifid, last_dropped = 1;
                off += blen;
                continue;
            }
        }
        last_high = ts_high, last_low = ts_low, last_if = ifid, last_dropped = 0;
        off += blen;
        if (hand_over(feed, frame, timestamp(ts_high, ts_low, ifc), ifc->linktype, d, caplen, wirelen) < 0)
            goto done;
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

/* pcap_run(buf, off, end, big_endian, divisor, linktype, snaplen, frame, prefilter, mask, table, floor,
 *          udp_ports, feed, n_udp, n_tcp, n_bytes, over_snaplen)
 * prefilter: whether there is one (ticks are due with it; only Ethernet frames are judged)
 * -> (off, frame, n_udp, n_tcp, n_bytes, over_snaplen)
 * Walks pcap records whole in the buffer, as `Capture._pcap_records` does; it stops in front of a
 * record that is not (or whose fields the prefilter reads are not) whole in the buffer, a damaged
 * one, or the record at which the prefilter's tick is due. */
static PyObject *pcap_run(PyObject *self, PyObject *args) {
    PyObject *bufobj, *table, *floor_obj, *udp_ports, *feed;
    Py_ssize_t off, end;
    int big, judge;
    unsigned long divisor;
    long linktype;
    unsigned long long snaplen;
    long long frame, mask, n_udp, n_tcp, n_bytes, over_snaplen;
    if (!PyArg_ParseTuple(args, "OnnpklKLpLOOOOLLLL", &bufobj, &off, &end, &big, &divisor, &linktype, &snaplen,
                          &frame, &judge, &mask, &table, &floor_obj, &udp_ports, &feed, &n_udp, &n_tcp, &n_bytes,
                          &over_snaplen))
        return NULL;
    if (divisor == 0) {
        PyErr_SetString(PyExc_ValueError, "divisor must not be 0");
        return NULL;
    }
    Py_buffer view;
    if (PyObject_GetBuffer(bufobj, &view, PyBUF_SIMPLE) < 0)
        return NULL;
    if (end > view.len)
        end = view.len;
    const unsigned char *buf = (const unsigned char *)view.buf;
    unsigned char *ports = NULL;
    long long floor = 0;
    int have_floor = 0;
    PyObject *result = NULL;
    if (judge && prefilter_state(udp_ports, floor_obj, table, &ports, &floor, &have_floor) < 0)
        goto done;
    while (end - off >= 16 + 48) {
        const unsigned char *b = buf + off;
        uint32_t sec = rd32(b, big), frac = rd32(b + 4, big), caplen = rd32(b + 8, big), wirelen = rd32(b + 12, big);
        if (caplen > MAX_PACKET || (Py_ssize_t)caplen > end - off - 16)
            break;
        if (judge && !((frame + 1) & mask))
            break; /* the prefilter's tick is due at this record: Python's loop calls it */
        const unsigned char *d = b + 16;
        if (caplen > snaplen)
            over_snaplen++;
        frame++;
        if (judge && linktype == 1) {
            int r = dropped(d, caplen, wirelen, ports, table, floor, have_floor, &n_udp, &n_tcp, &n_bytes);
            if (r < 0)
                goto done;
            if (r) {
                off += 16 + (Py_ssize_t)caplen;
                continue;
            }
        }
        off += 16 + (Py_ssize_t)caplen;
        /* sec + frac / divisor, as Python computes it: both exact doubles, one rounding each */
        if (hand_over(feed, frame, PyFloat_FromDouble((double)sec + (double)frac / (double)divisor), linktype, d,
                      caplen, wirelen) < 0)
            goto done;
    }
    result = Py_BuildValue("(nLLLLL)", off, frame, n_udp, n_tcp, n_bytes, over_snaplen);
done:
    PyMem_Free(ports);
    PyBuffer_Release(&view);
    return result;
}

static PyMethodDef methods[] = {
    {"epb_run", epb_run, METH_VARARGS, "Walk whole enhanced packet blocks (see capture.py)."},
    {"pcap_run", pcap_run, METH_VARARGS, "Walk whole pcap records (see capture.py)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_scan", "The capture readers' hot loops in C.", -1, methods};

PyMODINIT_FUNC PyInit__scan(void) { return PyModule_Create(&module); }
