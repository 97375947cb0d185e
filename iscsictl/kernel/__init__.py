"""The session/connection life cycle against the kernel, and sysfs readers (:mod:`.sysfs`)."""
