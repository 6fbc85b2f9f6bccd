# twistd plugins: `twistd market` (the dispatcher) and `twistd worker` (a computation client).
# twistd imports every plugin on every start, so the real modules load only when used.
from twisted.application.service import ServiceMaker

market = ServiceMaker(
    "Community Market Dispatcher",
    "market.tap",
    "The market's dispatcher: XML-RPC, pooling window and matcher, leases, prober, web site",
    "market",
)

worker = ServiceMaker(
    "Community Market worker",
    "market.worker.tap",
    "A computation client: runs market jobs in a sandbox, slice by slice",
    "worker",
)
