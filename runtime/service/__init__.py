"""`edgemate run` as a service: the supervisor (signals, SIGHUP reload, systemd notify and
watchdog), the control socket with its HTTP, access rules and client limits, /metrics, and the
process health readings.
"""
