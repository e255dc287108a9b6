from autobatch._cli import main

raise SystemExit(main())
