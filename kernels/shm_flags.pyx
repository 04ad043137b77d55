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


cdef enum:
    MAX_NEIGHBOURS = 8


cdef class StepCounters:
    """This process's step counter and its neighbours', each an int64 array of one element
    in shared memory (kept alive here). One call to publish or to wait for all of them:
    a step pays one call, not one per neighbour, right after a sweep has pushed the
    interpreter's state out of the cache."""

    cdef int64_t *_mine
    cdef const int64_t *_theirs[MAX_NEIGHBOURS]
    cdef int _count
    cdef object _keep

    def __init__(self, int64_t[::1] mine not None, list theirs not None):
        if len(theirs) > MAX_NEIGHBOURS:
            raise ValueError(f"at most {MAX_NEIGHBOURS} neighbours, got {len(theirs)}")
        cdef int64_t[::1] counter
        self._mine = &mine[0]
        self._count = 0
        for counter in theirs:
            self._theirs[self._count] = &counter[0]
            self._count += 1
        self._keep = (mine.base, [c.base for c in theirs])

    def publish(self, int64_t value):
        """Store ``value`` in this process's counter, after every store made before."""
        store_release(self._mine, value)

    def wait(self, int64_t value):
        """Until every neighbour's counter is at least ``value``; what they stored before
        publishing it is then visible here."""
        cdef int i
        for i in range(self._count):
            _wait(self._theirs[i], value)


cdef int _wait(const int64_t *p, int64_t value) except -1:
    cdef int64_t spins = 0
    with nogil:
        while load_acquire(p) < value:
            spins += 1
            if spins > SPINS_BEFORE_YIELD:
                sched_yield()
                if spins % YIELDS_PER_SIGNAL_CHECK == 0:
                    with gil:
                        PyErr_CheckSignals()  # raises what a handler raised
    return 0
