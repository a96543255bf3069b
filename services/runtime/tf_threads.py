"""TensorFlow's thread pools, set once per process before TensorFlow runs anything.

TensorFlow sizes its intra-op pool (threads inside one op) and inter-op pool (ops run side by
side) to the machine's cores in *every* process. Detection and embedding run as separate
processes on the same cores, each serving several calls at once, so by default each call may
start as many threads as there are cores and they all compete (measured in
bench/results/kiosk.md). A service sets its pools from its settings in warm-up; 0 keeps
TensorFlow's default. Imports TensorFlow only when called, so the slim services never load it.
"""

from __future__ import annotations

import logging

log = logging.getLogger("facegate.tf")


def configure_threads(intra_op: int, inter_op: int) -> None:
    """Set the pools (0 = TensorFlow's default); a no-op once TensorFlow has started running."""
    import tensorflow as tf

    try:
        if intra_op:
            tf.config.threading.set_intra_op_parallelism_threads(intra_op)
        if inter_op:
            tf.config.threading.set_inter_op_parallelism_threads(inter_op)
    except RuntimeError:  # TensorFlow already initialised in this process (tests sharing one)
        log.warning("TensorFlow threads already fixed; intra/inter-op settings not applied")
        return
    log.info("tensorflow threads", extra={"intra_op": intra_op, "inter_op": inter_op})
