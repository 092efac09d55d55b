"""The app's domains as plain objects: created in SchedtopApp.__init__, driven by its keys,
reporting back through Messages the app posts to itself. None of them imports the app,
a screen or a widget, so each is tested without running Textual."""
