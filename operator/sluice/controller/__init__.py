"""The control loop: a watch cache, one work queue with one timer heap, and the reconciler."""
