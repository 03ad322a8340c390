"""NordPass Activity API -> Microsoft Sentinel (`NordPassEventLogs_CL`) connector."""

__version__ = "0.1.0"
USER_AGENT = f"nordpass-sentinel-connector/{__version__}"
