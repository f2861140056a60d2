/* par.h - when a kernel's loop is worth spreading over the threads. Internal to nn/.
 *
 * A parallel region costs a few microseconds to start and its threads spin at the end; for
 * small work (decoding one token, tiny test models) one thread is faster, and on a busy
 * machine every region also waits for a second core. Loops under NN_PAR_MIN elements of
 * work run on the calling thread.
 */
#ifndef FJ_NN_PAR_H
#define FJ_NN_PAR_H

#define NN_PAR_MIN 32768

/* An OpenMP clause: parallel only when `work` elements justify it. */
#define NN_PAR_IF(work) if ((double)(work) >= NN_PAR_MIN)

#endif
