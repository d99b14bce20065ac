from semanticdraw_cli.cli import main

main()
