from cxreport.cli import main

raise SystemExit(main())
