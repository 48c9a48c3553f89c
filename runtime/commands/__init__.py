"""The CLI commands other than `run`: bench (and its co-tenant and stress helpers), check,
devices, demo, mouth, and the control client (status, say, stop). Each is a thin layer over
the stages; none of them is imported by the appliance itself.
"""
