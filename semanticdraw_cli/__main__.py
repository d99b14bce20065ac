from semanticdraw_cli.cli.app import main

main()
