"""``iscsictl``: the iscsiadm-compatible command line.

``main`` (parser, dispatch, the only ``sys.exit``), ``errors`` (open-iscsi's exit code table),
``output`` (text and JSON rendering), and one module per mode: ``discovery_cmd`` (discovery,
discoverydb), ``node_cmd``, ``iface_cmd``; ``session_cmd`` belongs to the daemon side.
"""
