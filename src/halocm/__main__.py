from halocm.cli import main

main()
