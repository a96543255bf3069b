from services.docverify.server import main

main()
