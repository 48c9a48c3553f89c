"""Small operating-system helpers the stages share: where data and caches live, silencing C
libraries that print to stderr, and binding unix sockets safely.
"""
