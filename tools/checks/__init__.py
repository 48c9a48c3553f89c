"""Checks against a running appliance: hostile inputs (attack), lip sync measured on a recording (lipsync_check), and the shipped unit under a real systemd (systemd_check.sh).
"""
