"""GET /metrics: the service status in the Prometheus text exposition format (0.0.4)."""
from __future__ import annotations

from .status import ServiceStatus

#: (ServiceStatus field, metric name, type, help). Missing or None values are left out, as
#: Prometheus expects for a reading that does not exist (no thermal sensor).
_METRICS = (
    ("uptime_s", "edgemate_uptime_seconds", "gauge", "Seconds since the service started."),
    ("fps", "edgemate_fps", "gauge", "Frames shown per second over the last 2 s."),
    ("frames_shown", "edgemate_frames_shown_total", "counter", "Frames shown."),
    ("drops", "edgemate_frames_dropped_total", "counter",
     "Frames skipped because rendering fell behind the audio clock."),
    ("mouth_missing", "edgemate_mouth_missing_total", "counter",
     "Frames shown before the audio model had computed their mouth (held at the last one)."),
    ("preempted", "edgemate_frames_preempted_total", "counter",
     "Of the dropped frames, those another process caused by holding the core (the "
     "frame's own CPU cost fitted its budget): never a reason to lower the quality."),
    ("recent_max_av_offset_ms", "edgemate_av_offset_max_milliseconds", "gauge",
     "Largest picture-to-sound offset over the last 60 s."),
    ("temperature_c", "edgemate_temperature_celsius", "gauge",
     "CPU/SoC temperature the quality governor reads."),
    ("cpu_other_percent", "edgemate_cpu_other_percent", "gauge",
     "CPU used by other processes, % of all cores."),
    ("quality_switches", "edgemate_quality_switches_total", "counter",
     "Quality level switches by the governor (this appliance)."),
    ("barge_ins", "edgemate_barge_ins_total", "counter", "Barge-ins (POST /stop)."),
    ("barge_in_latency_ms", "edgemate_barge_in_latency_milliseconds", "gauge",
     "Request to closed mouth on screen, last barge-in."),
    ("says", "edgemate_say_requests_total", "counter", "POST /say requests."),
    ("says_rejected", "edgemate_say_rejected_total", "counter", "POST /say refused or cut."),
    ("reloads", "edgemate_reloads_total", "counter", "Configuration reloads applied."),
    ("reload_failures", "edgemate_reload_failures_total", "counter",
     "Reloads rejected (bad config or model file); the previous one kept running."),
    ("rss_mb", "edgemate_resident_memory_megabytes", "gauge",
     "Resident memory, memory-mapped template pages included."),
    ("private_mb", "edgemate_private_memory_megabytes", "gauge",
     "Anonymous resident memory (heap, stacks): where a leak shows."),
    ("heap_in_use_mb", "edgemate_heap_in_use_megabytes", "gauge",
     "C heap handed out (glibc mallinfo2), untouched pages of big arrays included: "
     "grows with a leak."),
    ("heap_free_mb", "edgemate_heap_free_megabytes", "gauge",
     "C heap freed but kept by the allocator: saws with fragmentation."),
    ("python_blocks", "edgemate_python_allocated_blocks", "gauge",
     "Python small-object blocks allocated: grows with a Python-level leak."),
    ("open_fds", "edgemate_open_fds", "gauge", "Open file descriptors."),
    ("threads", "edgemate_threads", "gauge", "Threads of the process."),
)
_LEVELS = ("FULL", "COARSE", "PASS")


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def prometheus_text(status: ServiceStatus) -> str:
    lines = []
    for key, name, kind, help_text in _METRICS:
        value = getattr(status, key)
        if value is None:
            continue
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}", f"{name} {float(value):g}"]
    lines += ["# HELP edgemate_quality_level Render quality level in use (1 = current).",
              "# TYPE edgemate_quality_level gauge"]
    level = str(status.level or "").upper()
    lines += [f'edgemate_quality_level{{level="{name}"}} {int(name == level)}' for name in _LEVELS]
    spent = status.time_at_level_s
    if spent:  # only with the governor (render.quality: auto)
        lines += ["# HELP edgemate_quality_level_seconds_total Seconds spent at each level.",
                  "# TYPE edgemate_quality_level_seconds_total counter"]
        lines += [f'edgemate_quality_level_seconds_total{{level="{name}"}} '
                  f'{float(spent.get(name.lower(), 0.0)):g}' for name in _LEVELS]
    lines += ["# HELP edgemate_throttled 1 while a throttle flag is set.",
              "# TYPE edgemate_throttled gauge",
              f"edgemate_throttled {int(bool(status.throttled))}"]
    lines += ["# HELP edgemate_up 1 while the frame loop runs.", "# TYPE edgemate_up gauge",
              f"edgemate_up {int(status.state == 'running')}"]
    error = status.last_error
    lines += ["# HELP edgemate_info Version and last error (empty when none).",
              "# TYPE edgemate_info gauge",
              f'edgemate_info{{version="{_escape(status.version)}",'
              f'last_error="{_escape(str(error or ""))}"}} 1']
    return "\n".join(lines) + "\n"
