--- wc.c.orig
+++ wc.c
@@ -19,6 +19,7 @@
 			inword = 0;
 		} else if (!inword) {
 			inword = 1;
+			c->words++;
 		}
 	}
 }
