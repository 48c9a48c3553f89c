"""How much rendering each frame gets: the `Quality` levels and per-frame cost records,
the policy (fixed or governed), the governor that judges own cost against pre-emption and
temperature, the sensors it reads, and the smooth transition between levels.
"""
