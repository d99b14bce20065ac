"""The commands: the Typer app, what every command shares, and terminal feedback. Import stays light: no torch."""
