# cython: language_level=3
"""Step counters in memory that several processes share (an MPI-3 shared window): one
process publishes a count with release order, its neighbours wait for it with acquire
order, so every store made before the publish is seen after the wait (C11 atomics, on
any CPU). No MPI and no GIL while waiting (the rank's other threads, such as its
launcher watch, go on): a neighbour that is behind costs a spin, then ``sched_yield``
calls, which leave the core to it when ranks outnumber cores.
"""

from cpython.exc cimport PyErr_CheckSignals
from libc.stdint cimport int64_t

cdef extern from *:
    """
    #include <sched.h>
    #include <stdint.h>
    static inline void hpc_store_release(int64_t *p, int64_t v) {
        __atomic_store_n(p, v, __ATOMIC_RELEASE);
    }
    static inline int64_t hpc_load_acquire(const int64_t *p) {
        return __atomic_load_n(p, __ATOMIC_ACQUIRE);
    }
    """
    void store_release "hpc_store_release"(int64_t *p, int64_t v) nogil
    int64_t load_acquire "hpc_load_acquire"(const int64_t *p) nogil
    int sched_yield() nogil

# Polls before the first yield: a neighbour in step with this rank arrives within a few
# microseconds, and a yield costs about a microsecond even with nothing else to run.
# Then the signal handlers get a turn every YIELDS_PER_SIGNAL_CHECK yields (about a
# millisecond), so that a rank told to stop while it waits does not wait for ever.
cdef enum:
    SPINS_BEFORE_YIELD = 2000
    YIELDS_PER_SIGNAL_CHECK = 1024


def publish(int64_t[::1] counter, int64_t value):
    """Store ``value`` in ``counter[0]``, after every store this process made before."""
    store_release(&counter[0], value)


def wait_for(const int64_t[::1] counter, int64_t value):
    """Until ``counter[0] >= value``; what was stored before it was published is then
    visible to this process."""
    cdef int64_t spins = 0
    cdef const int64_t *p = &counter[0]
    with nogil:
        while load_acquire(p) < value:
            spins += 1
            if spins > SPINS_BEFORE_YIELD:
                sched_yield()
                if spins % YIELDS_PER_SIGNAL_CHECK == 0:
                    with gil:
                        PyErr_CheckSignals()  # raises what a handler raised

