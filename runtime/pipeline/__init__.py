"""The appliance: wiring one config into a source, speech, schedule, quality, render and
display stages; the frame body that every frame runs (the bench runs the same one); the frame
loop; live statistics and the typed status that the service reads.
"""
