"""What members submit: jobs (a module, a function, arguments) and pythia-style task bundles."""
