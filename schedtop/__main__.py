from schedtop.cli import main

raise SystemExit(main())
