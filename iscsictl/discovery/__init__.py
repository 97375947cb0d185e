"""Target discovery: SendTargets over TCP (``sendtargets``)."""
