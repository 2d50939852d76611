from streamtune.cli.main import main

main()
