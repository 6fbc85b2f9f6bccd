"""The dispatcher service: work requests, the pooling window, leases, check-ins, probes, reaping."""
