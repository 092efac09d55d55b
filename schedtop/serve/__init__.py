"""`schedtop serve`: the TUI in a web browser through textual-serve, for demos.

cli.py is the subcommand, server.py the textual-serve server (who may connect, how many),
session.py what each session runs (it ends with the server),
browser.py a small Chrome DevTools client (headless Chromium: the test and the screenshot).
"""
