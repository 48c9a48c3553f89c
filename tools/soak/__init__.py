"""The soak: a long run of `edgemate run` under a scripted load of says, stops, reloads and bad clients, and its report (memory, fds, offsets, barge-in latency).
"""
