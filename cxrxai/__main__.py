from cxrxai.cli import main

raise SystemExit(main())
