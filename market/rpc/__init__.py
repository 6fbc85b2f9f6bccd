"""XML-RPC at /RPC2: the methods (``methods``), the HTTP/1.1 they are served over (``http``), the
clients the CLI and the worker use (``client``) and the Fault codes (``faults``)."""
