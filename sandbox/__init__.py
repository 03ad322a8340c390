"""Local stand-ins for NordPass and Azure, shared by tests, the demo and the benchmark."""
