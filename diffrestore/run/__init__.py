"""One restoration run: options and planning, the checks before loading, memory, the engine,
devices and random streams, progress and stop signals."""
